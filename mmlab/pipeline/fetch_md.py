"""Stage 1, ``fetch_md``: the market-data view with md-cache freshness semantics.

The local book is the cache. Its age is ``now_ns - md.last_ts_local_ns`` (local receive time of the last applied
book message). Three uses read it with different freshness rules:

- guards read ``fresh_only``: the view must be valid and at most ``ttl_ms`` old (``guard_fresh``); otherwise
  ``pricing_on_stale[GUARD_BLOCK]`` counts and the guards' STALE_BOOK halt applies;
- pricing reads ``fresh_ms_for_pricing``: older views count ``pricing_on_stale[PRICING_THRESHOLD]`` and are
  priced with a widened spread, or not priced at all when ``skip_pricing_on_stale``;
- general use reads ``stale_ok``: a view older than ``ttl_ms`` is a cache miss; it is still served (stale) when
  ``stale_ok``, else pricing is skipped.

A sequence gap or an update_id rewind invalidates the view until the next snapshot (``md_on_book_update_nb``
tracks them per book message; this stage also catches a rewind between two decisions). A requested depth above
the held depth is a miss, never an upscaling: ``depth_ok`` is false and the top of book alone is priced.

Writes ``decision`` fields: md_age_ns, held_depth, pricing_stale (0 fresh, 1 widen, 2 skip), guard_fresh,
depth_ok, md_reason. Returns a ``FetchReason``.
"""

from __future__ import annotations

from numba import njit

from mmlab.types import FetchReason, MdInvalid, SeqCheck, StaleReason

__all__ = ["PRICING_FRESH", "PRICING_SKIP", "PRICING_WIDEN", "count_book_message_nb", "fetch_md_nb", "md_invalidate_nb",
           "md_on_book_update_nb", "md_sync_nb", "sequence_break_nb"]

#: ``decision.pricing_stale`` values.
PRICING_FRESH = 0
PRICING_WIDEN = 1
PRICING_SKIP = 2

_INV_NONE = int(MdInvalid.NONE)
_INV_GAP = int(MdInvalid.GAP)
_INV_REWIND = int(MdInvalid.REWIND)
_INV_MANUAL = int(MdInvalid.MANUAL)
_SEQ_NONE = int(SeqCheck.NONE)
_SEQ_CONTIGUOUS = int(SeqCheck.CONTIGUOUS)
_STALE_PRICING = int(StaleReason.PRICING_THRESHOLD)
_STALE_GUARD = int(StaleReason.GUARD_BLOCK)

_OK = int(FetchReason.OK)
_INVALID_GAP = int(FetchReason.INVALID_GAP)
_INVALID_REWIND = int(FetchReason.INVALID_REWIND)
_INVALID_MANUAL = int(FetchReason.INVALID_MANUAL)
_NO_BOOK = int(FetchReason.NO_BOOK)
_CROSSED = int(FetchReason.CROSSED)
_STALE_TTL = int(FetchReason.STALE_TTL)
_STALE_SKIP = int(FetchReason.STALE_PRICING_SKIP)
_STALE_WIDEN = int(FetchReason.STALE_PRICING_WIDEN)
_DEPTH_MISS = int(FetchReason.DEPTH_MISS)

# Best-price sentinels of the book kernel (mmlab.data.book_nb): +-2**62 mean an empty side.
_EMPTY_SIDE = 2**61


_BREAK_NONE = 0
_BREAK_REWIND = 1
_BREAK_GAP = 2


@njit(cache=True, _nrt=False)
def sequence_break_nb(update_id, last_update_id):
    """How a book message's ``update_id`` follows the last one: 1 a rewind (below it), 2 a gap (past it + 1), else
    0 (in sequence, a resend of the same id, or unchecked: either id < 0, i.e. no sequence)."""
    if update_id < 0 or last_update_id < 0:
        return _BREAK_NONE
    if update_id < last_update_id:
        return _BREAK_REWIND
    if update_id > last_update_id + 1:
        return _BREAK_GAP
    return _BREAK_NONE


@njit(cache=True, _nrt=False)
def count_book_message_nb(bk, ts_local_ns, ts_exch_ns, update_id, is_snapshot):
    """Count one applied book message in the message fields of book record ``bk`` (``book_dtype``; the event loop
    calls it at the ``batch_end`` row of each message of a local book): the message's number, times and id, and
    the number of the last snapshot (last row SNAPSHOT, or CLEAR when empty), rewind and gap
    (``sequence_break_nb``, whatever ``seq_check``: ``md_sync_nb`` applies the mode)."""
    n = bk.n_messages + 1
    bk.n_messages = n
    if is_snapshot:
        bk.msg_n_snapshots += 1
        bk.msg_last_snapshot = n
    else:
        brk = sequence_break_nb(update_id, bk.msg_update_id)
        if brk == _BREAK_REWIND:
            bk.msg_n_rewinds += 1
            bk.msg_last_rewind = n
        elif brk == _BREAK_GAP:
            bk.msg_n_gaps += 1
            bk.msg_last_gap = n
    if update_id >= 0:
        bk.msg_update_id = update_id
    bk.msg_ts_local = ts_local_ns
    bk.msg_ts_exch = ts_exch_ns


@njit(cache=True, _nrt=False)
def md_on_book_update_nb(md, fetch_params, ts_local_ns, ts_exch_ns, update_id, is_snapshot):
    """Record one applied book message (call at its ``batch_end``); flags a gap/rewind per ``seq_check``.

    A snapshot (or a CLEAR + SNAPSHOT message; Bybit ``u == 1``) clears an invalid view. ``update_id < 0`` (no
    sequence) is never checked. Returns the ``MdInvalid`` state after the message.
    """
    m = md
    mode = fetch_params.seq_check
    if is_snapshot:
        m.n_snapshots += 1
        m.invalid = _INV_NONE
    elif mode != _SEQ_NONE:
        brk = sequence_break_nb(update_id, m.last_update_id)
        if brk == _BREAK_REWIND:
            m.n_rewinds += 1
            m.invalid = _INV_REWIND
        elif brk == _BREAK_GAP and mode == _SEQ_CONTIGUOUS:
            m.n_gaps += 1
            m.invalid = _INV_GAP
    if update_id >= 0:
        m.last_update_id = update_id
    m.last_ts_local_ns = ts_local_ns
    m.last_ts_exch_ns = ts_exch_ns
    m.n_updates += 1
    return m.invalid


@njit(cache=True, _nrt=False)
def md_sync_nb(md, fetch_params, bk):
    """Bring ``md`` up to date with the book messages counted in book record ``bk`` (``count_book_message_nb``) since
    the last sync: the same status as ``md_on_book_update_nb`` called at each of them. Returns ``md.invalid``.

    The sequence checks follow ``seq_check``: rewinds unless NONE, gaps only when CONTIGUOUS; the view is
    invalid after the latest such message unless a snapshot came after it.
    """
    m = md
    seen = m.book_messages_seen
    n = bk.n_messages
    if n == seen:
        return m.invalid
    mode = fetch_params.seq_check
    latest = seen  # number of the latest message that set the validity
    if bk.msg_last_snapshot > latest:
        latest = bk.msg_last_snapshot
        m.invalid = _INV_NONE
    if mode != _SEQ_NONE:
        m.n_rewinds += bk.msg_n_rewinds - m.book_rewinds_seen
        if bk.msg_last_rewind > latest:
            latest = bk.msg_last_rewind
            m.invalid = _INV_REWIND
    if mode == _SEQ_CONTIGUOUS:
        m.n_gaps += bk.msg_n_gaps - m.book_gaps_seen
        if bk.msg_last_gap > latest:
            m.invalid = _INV_GAP
    m.n_snapshots += bk.msg_n_snapshots - m.book_snapshots_seen
    m.book_messages_seen = n
    m.book_snapshots_seen = bk.msg_n_snapshots
    m.book_rewinds_seen = bk.msg_n_rewinds
    m.book_gaps_seen = bk.msg_n_gaps
    if bk.msg_update_id >= 0:
        m.last_update_id = bk.msg_update_id
    m.last_ts_local_ns = bk.msg_ts_local
    m.last_ts_exch_ns = bk.msg_ts_exch
    m.n_updates += n - seen
    return m.invalid


@njit(cache=True, _nrt=False)
def md_invalidate_nb(md, reason):
    """Invalidate the view until the next snapshot (e.g. on reconnect); ``reason`` is an ``MdInvalid``."""
    m = md
    m.invalid = reason
    if reason == _INV_GAP:
        m.n_gaps += 1
    elif reason == _INV_REWIND:
        m.n_rewinds += 1


@njit(cache=True, _nrt=False)
def fetch_md_nb(now_ns, inp, md, params, state, out):
    """Stage 1: freshness, validity and depth of the book view at ``now_ns``; returns a ``FetchReason``."""
    p = params
    s = state
    m = md
    x = inp
    o = out
    s.calls += 1

    # Invalidations seen since the previous call, counted once each.
    if m.n_gaps > s.seen_gaps:
        s.invalidations[_INV_GAP] += m.n_gaps - s.seen_gaps
    if m.n_rewinds > s.seen_rewinds:
        s.invalidations[_INV_REWIND] += m.n_rewinds - s.seen_rewinds
    if m.invalid == _INV_MANUAL and s.seen_invalid != _INV_MANUAL:
        s.invalidations[_INV_MANUAL] += 1
    if m.n_snapshots > s.seen_snapshots:
        s.own_invalid = _INV_NONE
    elif (
        p.seq_check != _SEQ_NONE
        and m.n_rewinds == s.seen_rewinds
        and s.seen_update_id >= 0
        and 0 <= m.last_update_id < s.seen_update_id
    ):
        # The sequence went back between two decisions without a snapshot the per-message hook saw.
        s.own_invalid = _INV_REWIND
        s.invalidations[_INV_REWIND] += 1
    s.seen_gaps = m.n_gaps
    s.seen_rewinds = m.n_rewinds
    s.seen_snapshots = m.n_snapshots
    s.seen_invalid = m.invalid
    if m.last_update_id >= 0:
        s.seen_update_id = m.last_update_id

    invalid = m.invalid
    if invalid == _INV_NONE:
        invalid = s.own_invalid

    if m.last_ts_local_ns < 0 or m.n_updates == 0:
        age_ns = -1
    else:
        age_ns = now_ns - m.last_ts_local_ns
    age_ms = age_ns * 1e-6
    held = min(x.n_bid_levels, x.n_ask_levels)
    o.md_age_ns = age_ns
    o.held_depth = held

    has_book = age_ns >= 0 and x.best_bid_tick > -_EMPTY_SIDE and x.best_ask_tick < _EMPTY_SIDE
    crossed = has_book and x.best_bid_tick >= x.best_ask_tick
    depth_ok = p.depth_levels <= held
    if not depth_ok:
        s.depth_miss += 1
    o.depth_ok = depth_ok

    valid = invalid == _INV_NONE and has_book and not (crossed and p.reject_crossed)
    within_ttl = age_ms <= p.ttl_ms
    o.guard_fresh = valid and within_ttl
    if not o.guard_fresh:
        s.pricing_on_stale[_STALE_GUARD] += 1
    if valid and within_ttl and depth_ok:
        s.hits += 1
    else:
        s.misses += 1

    reason = _OK
    pricing = PRICING_FRESH
    if invalid == _INV_GAP:
        reason = _INVALID_GAP
        pricing = PRICING_SKIP
    elif invalid == _INV_REWIND:
        reason = _INVALID_REWIND
        pricing = PRICING_SKIP
    elif invalid != _INV_NONE:
        reason = _INVALID_MANUAL
        pricing = PRICING_SKIP
    elif not has_book:
        reason = _NO_BOOK
        pricing = PRICING_SKIP
    elif crossed and p.reject_crossed:
        reason = _CROSSED
        pricing = PRICING_SKIP
    elif not within_ttl and not p.stale_ok:
        reason = _STALE_TTL
        pricing = PRICING_SKIP
    elif age_ms > p.fresh_ms_for_pricing:
        s.pricing_on_stale[_STALE_PRICING] += 1
        if p.skip_pricing_on_stale:
            reason = _STALE_SKIP
            pricing = PRICING_SKIP
        else:
            reason = _STALE_WIDEN
            pricing = PRICING_WIDEN
    elif not depth_ok:
        reason = _DEPTH_MISS
    o.pricing_stale = pricing
    o.md_reason = reason
    return reason
