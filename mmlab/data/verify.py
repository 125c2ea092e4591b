"""``mmlab data verify``: replay each stored stream through the book kernel and check it.

One symbol at a time, part file by part file (:func:`mmlab.data.bridge.iter_event_chunks`), one numba pass
(:func:`verify_chunk_nb`) carries the book and the counters across chunks. Per stream it reports:

- ``sequence_gaps`` = ``gaps_ingest`` (gaps the ingest found and recorded in ``_meta.json``) + ``gaps_stored``
  (``rewinds`` + ``jumps`` of ``update_id`` between the stored book messages). What the stored rows can show
  depends on the venue (:data:`SEQ_RULES`): Bybit deltas rise by exactly one (a jump or a fall is a gap; a
  snapshot re-bases); Binance stores only ``u`` (``U``/``pu`` are checked at ingest), so only a fall or a repeat
  (a rewind) is visible; a snapshot may not be older than the book before it.
- ``crossed_books``: best bid >= best ask after a book message (its ``batch_end`` row), with both sides present.
  Messages before the first snapshot are not checked (the book is unknown); a stream without any snapshot (e.g.
  synthetic data built from DEPTH rows) is checked from its first row.
- ``ts_non_monotonic``: rows whose ``ts_local`` is below the previous row's (also across part files and days);
  ``ts_exch_non_monotonic``: the same for ``ts_exch`` of DEPTH/SNAPSHOT rows (reported, not a failure: venues
  stamp messages of different streams independently).
- ``bad_values``: rows (other than CLEAR) with a NaN, infinite or negative qty, or a NaN or non-positive price.
- ``bbo_checked`` / ``bbo_agreement``: BBO rows whose ``update_id`` equals that of a book message (whether the BBO
  row comes before or after it), and the fraction whose price equals the rebuilt best price of that side after
  that message. ``bbo_unmatched``: BBO rows with no book message of that ``update_id`` (not a failure).

A stream fails (``ok: false``) on: a stored-row gap (``gaps_stored > 0``), an ingest gap whose ``handled`` field is
empty (a gap the ingest recorded but did not quarantine and re-sync; those it did are reported in ``notes`` and
pass, since the rows written are consistent), a crossed book, a bad value, a ``ts_local`` decrease, or
``bbo_agreement < 1`` when ``bbo_checked > 0``.

>>> report = verify("data")  # doctest: +SKIP
>>> report["ok"], report["streams"][0]["bbo_agreement"]  # doctest: +SKIP
(True, 1.0)
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
from numba import njit

from mmlab.data import store
from mmlab.data.book_nb import NO_ASK_TICK, NO_BID_TICK, book_apply_nb, new_books
from mmlab.data.bridge import iter_event_chunks
from mmlab.errors import DataError
from mmlab.types import Kind, SeqCheck, verify_state_dtype

__all__ = ["SEQ_RULES", "seq_rule", "verify", "verify_stream", "verify_chunk_nb", "new_verify_state"]

#: Sequence rule of ``update_id`` between stored book messages, by venue prefix (see module docstring).
SEQ_RULES: dict[str, SeqCheck] = {
    "bybit-": SeqCheck.CONTIGUOUS,
    "binance-": SeqCheck.MONOTONIC,
}

_DEPTH = int(Kind.DEPTH)
_TRADE = int(Kind.TRADE)
_CLEAR = int(Kind.CLEAR)
_SNAPSHOT = int(Kind.SNAPSHOT)
_BBO = int(Kind.BBO)
_MONOTONIC = int(SeqCheck.MONOTONIC)
_CONTIGUOUS = int(SeqCheck.CONTIGUOUS)


def seq_rule(venue: str) -> SeqCheck:
    """The ``update_id`` rule checkable from stored rows of ``venue`` (NONE for venues without one)."""
    for prefix, rule in SEQ_RULES.items():
        if venue.startswith(prefix):
            return rule
    return SeqCheck.NONE


def new_verify_state(rule: SeqCheck, book_known: bool) -> np.ndarray:
    """A fresh ``verify_state_dtype`` record (shape (1,)) for one stream."""
    st = np.zeros(1, dtype=verify_state_dtype)
    st["last_book_uid"] = -1
    st["seq_rule"] = int(rule)
    st["book_known"] = book_known
    for f in ("first_rewind_row", "first_jump_row", "first_crossed_row", "first_bad_row", "first_ts_back_row",
              "first_seq_prev_uid", "first_seq_uid"):
        st[f] = -1
    return st


@njit(cache=True, error_model="numpy")
def verify_chunk_nb(ev, row0, state, book, bid_qty, ask_qty, msg_uid, msg_bid_tick, msg_ask_tick, bbo_uid, bbo_side, bbo_tick):
    """Check one chunk of a stream's events (rows ``row0..``); returns (book messages indexed, BBO rows kept)."""
    st = state[0]
    n_msg = 0
    n_bbo = 0
    for i in range(ev.shape[0]):
        r = row0 + i
        kind = ev[i].kind
        uid = ev[i].update_id
        ts_l = ev[i].ts_local
        if st.rows > 0 and ts_l < st.last_ts_local_ns:
            st.ts_local_back += 1
            if st.first_ts_back_row < 0:
                st.first_ts_back_row = r
                st.first_ts_back_ts_ns = ts_l
        st.last_ts_local_ns = ts_l
        st.rows += 1
        bad = False
        if kind != _CLEAR:
            q = ev[i].qty
            # NaN prices arrive as the most negative int64 tick, non-positive ones as ticks <= 0.
            if not (q >= 0.0) or q == np.inf or ev[i].price_ticks <= 0:
                bad = True
                st.bad_values += 1
                if st.first_bad_row < 0:
                    st.first_bad_row = r
                    st.first_bad_ts_ns = ts_l
        if kind == _DEPTH or kind == _SNAPSHOT or kind == _CLEAR:
            if kind != _CLEAR:
                if ev[i].ts_exch < st.last_depth_ts_exch_ns:
                    st.ts_exch_back_depth += 1
                st.last_depth_ts_exch_ns = ev[i].ts_exch
            if not st.in_book_msg:
                # First row of a book message: check its update_id against the previous message's.
                st.in_book_msg = True
                st.msg_is_snapshot = kind != _DEPTH
                prev = st.last_book_uid
                if uid >= 0 and prev >= 0 and st.seq_rule != 0:
                    rewind = False
                    jump = False
                    if st.msg_is_snapshot:
                        # Contiguous venues re-base on a snapshot (u == 1 restarts, level-1 resends).
                        rewind = st.seq_rule == _MONOTONIC and uid < prev
                    elif st.seq_rule == _CONTIGUOUS:
                        rewind = uid < prev  # an equal u is a resend
                        jump = uid > prev + 1
                    elif st.last_msg_was_snapshot:
                        rewind = uid < prev  # the first diff may end at the snapshot's id
                    else:
                        rewind = uid <= prev
                    if rewind:
                        st.rewinds += 1
                        if st.first_rewind_row < 0:
                            st.first_rewind_row = r
                            st.first_rewind_ts_ns = ts_l
                    if jump:
                        st.jumps += 1
                        if st.first_jump_row < 0:
                            st.first_jump_row = r
                            st.first_jump_ts_ns = ts_l
                    if (rewind or jump) and st.first_seq_uid < 0:
                        st.first_seq_prev_uid = prev
                        st.first_seq_uid = uid
            if not bad:
                book_apply_nb(book, bid_qty, ask_qty, 0, kind, ev[i].side, ev[i].price_ticks, ev[i].qty)
            if ev[i].batch_end:
                st.in_book_msg = False
                if st.msg_is_snapshot:
                    st.book_known = True
                if st.book_known:
                    bb = book[0].best_bid_tick
                    ba = book[0].best_ask_tick
                    st.book_checks += 1
                    if bb != NO_BID_TICK and ba != NO_ASK_TICK and bb >= ba:
                        st.crossed += 1
                        if st.first_crossed_row < 0:
                            st.first_crossed_row = r
                            st.first_crossed_ts_ns = ts_l
                    if uid >= 0:
                        msg_uid[n_msg] = uid
                        msg_bid_tick[n_msg] = bb
                        msg_ask_tick[n_msg] = ba
                        n_msg += 1
                if uid >= 0:
                    st.last_book_uid = uid
                st.last_msg_was_snapshot = st.msg_is_snapshot
        elif kind == _BBO:
            if uid >= 0 and not bad:
                bbo_uid[n_bbo] = uid
                bbo_side[n_bbo] = ev[i].side
                bbo_tick[n_bbo] = ev[i].price_ticks
                n_bbo += 1
    return n_msg, n_bbo


def _join_bbo(msg_uid, msg_bid, msg_ask, bbo_uid, bbo_side, bbo_tick) -> tuple[int, int, int, int]:
    """(checked, agreeing, unmatched, first disagreeing BBO update_id or -1) of BBO rows against book messages.

    A BBO row is compared with the book after the message of the same update_id (the last such message if the
    venue repeated one), wherever the two rows sit in ts_local order.
    """
    if len(bbo_uid) == 0:
        return 0, 0, 0, -1
    order = np.argsort(msg_uid, kind="stable")
    su = msg_uid[order]
    last_of_run = np.ones(len(su), dtype=bool)
    if len(su) > 1:
        last_of_run[:-1] = su[1:] != su[:-1]
    keep = order[last_of_run]
    ku = msg_uid[keep]
    pos = np.searchsorted(ku, bbo_uid)
    pos_c = np.minimum(pos, max(len(ku) - 1, 0))
    found = (pos < len(ku)) & (ku[pos_c] == bbo_uid) if len(ku) else np.zeros(len(bbo_uid), dtype=bool)
    idx = keep[pos_c[found]] if len(ku) else np.empty(0, dtype=np.int64)
    side = bbo_side[found]
    px = bbo_tick[found]
    best = np.where(side > 0, msg_bid[idx], msg_ask[idx])
    agree = best == px
    checked = int(found.sum())
    first_bad = int(bbo_uid[found][~agree][0]) if checked and not agree.all() else -1
    return checked, int(agree.sum()), int(len(bbo_uid) - checked), first_bad


def _iso(ts_ns: int) -> str:
    t = dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ts_ns % 1_000_000_000) // 1_000_000:03d}Z"


def _has_snapshots(root, venue: str, symbol: str, meta: dict) -> bool:
    """Whether the stream holds CLEAR/SNAPSHOT rows: from _meta.json's per-day counts, else one column scan."""
    days = meta.get("days") or {}
    if days and all("rows_by_kind" in d for d in days.values()):
        return any(d["rows_by_kind"].get("SNAPSHOT", 0) + d["rows_by_kind"].get("CLEAR", 0) > 0 for d in days.values())
    import polars as pl

    files = [os.fspath(f) for d in store.list_days(root, venue, symbol) for f in store.day_files(root, venue, symbol, d)]
    if not files:
        return False
    kinds = [_CLEAR, _SNAPSHOT]
    return bool(pl.scan_parquet(files).select(pl.col("kind").is_in(kinds).any()).collect().item())


def verify_stream(root: str | os.PathLike, venue: str, symbol: str, *, n_levels: int = 1 << 16) -> dict:
    """Verify one (venue, symbol) stream of the store; returns its report row (see the module docstring)."""
    meta = store.read_meta(root, venue, symbol)
    rule = seq_rule(venue)
    state = new_verify_state(rule, book_known=not _has_snapshots(root, venue, symbol, meta))
    book, bid_qty, ask_qty = new_books(1, n_levels)
    msgs_uid, msgs_bid, msgs_ask, bbos_uid, bbos_side, bbos_tick = [], [], [], [], [], []
    row0 = 0
    for ev in iter_event_chunks(root, venue, symbol):
        n = len(ev)
        n_ends = int(np.count_nonzero(ev["batch_end"]))  # bounds the book messages indexed
        n_bbo_rows = int(np.count_nonzero(ev["kind"] == _BBO))
        m_uid = np.empty(n_ends, np.int64)
        m_bid = np.empty(n_ends, np.int64)
        m_ask = np.empty(n_ends, np.int64)
        b_uid = np.empty(n_bbo_rows, np.int64)
        b_side = np.empty(n_bbo_rows, np.int8)
        b_tick = np.empty(n_bbo_rows, np.int64)
        n_msg, n_bbo = verify_chunk_nb(ev, row0, state, book, bid_qty, ask_qty, m_uid, m_bid, m_ask, b_uid, b_side, b_tick)
        msgs_uid.append(m_uid[:n_msg].copy())
        msgs_bid.append(m_bid[:n_msg].copy())
        msgs_ask.append(m_ask[:n_msg].copy())
        bbos_uid.append(b_uid[:n_bbo].copy())
        bbos_side.append(b_side[:n_bbo].copy())
        bbos_tick.append(b_tick[:n_bbo].copy())
        row0 += n
    cat = lambda parts, dtype: np.concatenate(parts) if parts else np.empty(0, dtype)  # noqa: E731
    checked, agreeing, unmatched, first_bbo_bad = _join_bbo(
        cat(msgs_uid, np.int64), cat(msgs_bid, np.int64), cat(msgs_ask, np.int64),
        cat(bbos_uid, np.int64), cat(bbos_side, np.int8), cat(bbos_tick, np.int64),
    )
    st = state[0]
    gaps_meta = meta.get("gaps") or []
    unhandled = [g for g in gaps_meta if not g.get("handled")]
    gaps_stored = int(st["rewinds"] + st["jumps"])
    bbo_agreement = agreeing / checked if checked else None
    problems: list[str] = []
    notes: list[str] = []
    if st["rewinds"]:
        problems.append(
            f"{int(st['rewinds'])} update_id rewind(s); first at row {int(st['first_rewind_row'])} "
            f"({_iso(int(st['first_rewind_ts_ns']))})" + _seq_detail(st, "rewind")
        )
    if st["jumps"]:
        problems.append(
            f"{int(st['jumps'])} update_id jump(s); first at row {int(st['first_jump_row'])} "
            f"({_iso(int(st['first_jump_ts_ns']))})" + _seq_detail(st, "jump")
        )
    if unhandled:
        g = unhandled[0]
        problems.append(
            f"{len(unhandled)} ingest gap(s) not re-synced; first update_id {g.get('from_update_id')} -> "
            f"{g.get('to_update_id')} ({g.get('file')}:{g.get('line')}): re-ingest, or drop the affected days"
        )
    handled = len(gaps_meta) - len(unhandled)
    if handled:
        notes.append(f"{handled} ingest gap(s) quarantined and re-synced from the next snapshot")
    if st["crossed"]:
        problems.append(
            f"crossed book after {int(st['crossed'])} of {int(st['book_checks'])} messages; first at row "
            f"{int(st['first_crossed_row'])} ({_iso(int(st['first_crossed_ts_ns']))})"
        )
    if st["bad_values"]:
        problems.append(
            f"{int(st['bad_values'])} row(s) with NaN/negative qty or NaN/non-positive price; first at row "
            f"{int(st['first_bad_row'])} ({_iso(int(st['first_bad_ts_ns']))})"
        )
    if st["ts_local_back"]:
        problems.append(
            f"ts_local decreases {int(st['ts_local_back'])} time(s); first at row {int(st['first_ts_back_row'])} "
            f"({_iso(int(st['first_ts_back_ts_ns']))})"
        )
    if checked and agreeing < checked:
        problems.append(
            f"BBO disagrees with the rebuilt book in {checked - agreeing} of {checked} rows "
            f"(first at update_id {first_bbo_bad})"
        )
    if st["ts_exch_back_depth"]:
        notes.append(f"ts_exch of depth rows decreases {int(st['ts_exch_back_depth'])} time(s)")
    dropped = int(book[0]["dropped_levels"])
    if dropped:
        notes.append(f"{dropped} far level(s) outside the {n_levels}-tick book window were not tracked")
    if not st["book_known"]:
        notes.append("no snapshot in the stream's book rows: crossing was not checkable")
    ok = not problems
    return {
        "venue": venue,
        "symbol": symbol,
        "ok": ok,
        "events": int(st["rows"]),
        "sequence_gaps": len(gaps_meta) + gaps_stored,
        "gaps_ingest": len(gaps_meta),
        "gaps_ingest_unhandled": len(unhandled),
        "gaps_stored": gaps_stored,
        "rewinds": int(st["rewinds"]),
        "jumps": int(st["jumps"]),
        "seq_rule": SeqCheck(int(st["seq_rule"])).name,
        "crossed_books": int(st["crossed"]),
        "book_checks": int(st["book_checks"]),
        "ts_non_monotonic": int(st["ts_local_back"]),
        "ts_exch_non_monotonic": int(st["ts_exch_back_depth"]),
        "bad_values": int(st["bad_values"]),
        "bbo_checked": checked,
        "bbo_agreement": bbo_agreement,
        "bbo_unmatched": unmatched,
        "dropped_levels": dropped,
        "problems": problems,
        "notes": notes,
    }


def _seq_detail(st, what: str) -> str:
    if st["first_seq_uid"] < 0:
        return ""
    return f": update_id {int(st['first_seq_prev_uid'])} -> {int(st['first_seq_uid'])}"


def verify(root: str | os.PathLike, venue: str | None = None, symbol: str | None = None) -> dict:
    """Verify every stream of the store under ``root`` (optionally one venue and/or symbol).

    Returns ``{"ok": bool, "streams": [row, ...]}`` with one row per (venue, symbol); see the module docstring
    for the fields and the failure rules.
    """
    pairs = store.list_symbols(root)
    if venue:
        store.check_venue(venue)
        pairs = [p for p in pairs if p[0] == venue]
    if symbol:
        pairs = [p for p in pairs if p[1] == symbol.upper()]
    if not pairs:
        what = "/".join(x for x in (venue, symbol.upper() if symbol else None) if x) or "any stream"
        have = ", ".join(f"{v}/{s}" for v, s in store.list_symbols(root)[:10]) or "nothing"
        raise DataError(
            f"no data for {what} under {Path(root)} (it holds {have}); run `mmlab data ingest` or `mmlab data synth`, "
            "or pass the right ROOT/--venue/--symbol"
        )
    streams = [verify_stream(root, v, s) for v, s in pairs]
    return {"ok": all(s["ok"] for s in streams), "streams": streams}
