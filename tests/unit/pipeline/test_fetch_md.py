"""fetch_md: one test per FetchReason, counters, freshness modes, sequence gap/rewind, depth miss."""

import numpy as np

from mmlab.pipeline import fetch_md_nb, md_invalidate_nb
from mmlab.types import FetchReason, MdInvalid, StaleReason

MS = 1_000_000


def run(t, now_ns):
    pl = t.pl
    return FetchReason(fetch_md_nb(np.int64(now_ns), t.inp, t.md, pl.params("fetch_md"), pl.state("fetch_md"), t.out))


def state(t):
    return t.pl.state("fetch_md")


def test_ok_fresh_view_is_a_hit(tick):
    t = tick(fetch_md=dict(depth_levels=5))
    t.book_update(1_000 * MS, update_id=10)
    assert run(t, 1_010 * MS) == FetchReason.OK
    assert t.out["md_age_ns"] == 10 * MS
    assert t.out["guard_fresh"] and t.out["depth_ok"] and t.out["pricing_stale"] == 0
    s = state(t)
    assert (s["hits"], s["misses"], s["depth_miss"]) == (1, 0, 0)
    assert list(s["pricing_on_stale"]) == [0, 0]


def test_stale_pricing_widen_between_fresh_ms_and_ttl(tick):
    t = tick()  # fresh_ms_for_pricing 60, ttl_ms 100
    t.book_update(1_000 * MS)
    assert run(t, 1_080 * MS) == FetchReason.STALE_PRICING_WIDEN
    assert t.out["pricing_stale"] == 1 and t.out["guard_fresh"]
    s = state(t)
    assert s["pricing_on_stale"][StaleReason.PRICING_THRESHOLD] == 1
    assert s["pricing_on_stale"][StaleReason.GUARD_BLOCK] == 0
    assert s["hits"] == 1  # still within ttl


def test_stale_pricing_skip_when_configured(tick):
    t = tick(fetch_md=dict(skip_pricing_on_stale=True))
    t.book_update(1_000 * MS)
    assert run(t, 1_061 * MS) == FetchReason.STALE_PRICING_SKIP
    assert t.out["pricing_stale"] == 2


def test_exactly_fresh_ms_is_still_fresh(tick):
    t = tick()
    t.book_update(1_000 * MS)
    assert run(t, 1_060 * MS) == FetchReason.OK


def test_stale_ttl_miss_without_stale_ok(tick):
    t = tick(fetch_md=dict(stale_ok=False))
    t.book_update(1_000 * MS)
    assert run(t, 1_150 * MS) == FetchReason.STALE_TTL
    assert t.out["pricing_stale"] == 2 and not t.out["guard_fresh"]
    s = state(t)
    assert (s["hits"], s["misses"]) == (0, 1)
    assert s["pricing_on_stale"][StaleReason.GUARD_BLOCK] == 1


def test_stale_ok_serves_an_old_view_widened_and_counts_a_miss(tick):
    t = tick(fetch_md=dict(stale_ok=True))
    t.book_update(1_000 * MS)
    assert run(t, 1_150 * MS) == FetchReason.STALE_PRICING_WIDEN
    assert not t.out["guard_fresh"]
    assert (state(t)["hits"], state(t)["misses"]) == (0, 1)


def test_depth_miss_is_never_upscaled(tick):
    t = tick(fetch_md=dict(depth_levels=10), depth=5)
    t.book_update(1_000 * MS)
    assert run(t, 1_001 * MS) == FetchReason.DEPTH_MISS
    assert not t.out["depth_ok"] and t.out["held_depth"] == 5 and t.out["pricing_stale"] == 0
    s = state(t)
    assert (s["depth_miss"], s["misses"], s["hits"]) == (1, 1, 0)


def test_smaller_depth_request_is_a_hit(tick):
    t = tick(fetch_md=dict(depth_levels=3), depth=5)
    t.book_update(1_000 * MS)
    assert run(t, 1_001 * MS) == FetchReason.OK


def test_sequence_gap_invalidates_until_snapshot(tick):
    t = tick(fetch_md=dict(seq_check="contiguous"))
    t.book_update(1_000 * MS, update_id=10, snapshot=True)
    t.book_update(1_001 * MS, update_id=11)
    t.book_update(1_001 * MS, update_id=11)  # a resend of the same u is not a gap
    assert run(t, 1_002 * MS) == FetchReason.OK
    assert t.book_update(1_003 * MS, update_id=13) == MdInvalid.GAP
    assert run(t, 1_004 * MS) == FetchReason.INVALID_GAP
    t.book_update(1_005 * MS, update_id=14)
    assert run(t, 1_006 * MS) == FetchReason.INVALID_GAP  # still invalid: no snapshot yet
    assert t.out["pricing_stale"] == 2 and not t.out["guard_fresh"]
    assert state(t)["invalidations"][MdInvalid.GAP] == 1  # counted once
    t.book_update(1_007 * MS, update_id=20, snapshot=True)
    assert run(t, 1_008 * MS) == FetchReason.OK


def test_monotonic_check_ignores_jumps_but_catches_rewind(tick):
    t = tick()  # seq_check monotonic (default)
    t.book_update(1_000 * MS, update_id=10)
    t.book_update(1_001 * MS, update_id=15)
    assert run(t, 1_002 * MS) == FetchReason.OK
    assert t.book_update(1_003 * MS, update_id=12) == MdInvalid.REWIND
    assert run(t, 1_004 * MS) == FetchReason.INVALID_REWIND
    assert state(t)["invalidations"][MdInvalid.REWIND] == 1
    t.book_update(1_005 * MS, update_id=1, snapshot=True)
    assert run(t, 1_006 * MS) == FetchReason.OK


def test_rewind_between_decisions_is_caught_by_the_stage(tick):
    t = tick()
    t.book_update(1_000 * MS, update_id=10)
    assert run(t, 1_001 * MS) == FetchReason.OK
    t.md["last_update_id"] = 7  # a caller that does not run the per-message hook
    t.md["last_ts_local_ns"] = 1_002 * MS
    assert run(t, 1_003 * MS) == FetchReason.INVALID_REWIND
    assert run(t, 1_004 * MS) == FetchReason.INVALID_REWIND
    assert state(t)["invalidations"][MdInvalid.REWIND] == 1
    t.md["n_snapshots"] += 1
    assert run(t, 1_005 * MS) == FetchReason.OK


def test_no_sequence_check(tick):
    t = tick(fetch_md=dict(seq_check="none"))
    t.book_update(1_000 * MS, update_id=10)
    t.book_update(1_001 * MS, update_id=3)
    assert run(t, 1_002 * MS) == FetchReason.OK


def test_manual_invalidation_counted_once(tick):
    t = tick()
    t.book_update(1_000 * MS, update_id=10)
    md_invalidate_nb(t.md, int(MdInvalid.MANUAL))
    assert run(t, 1_001 * MS) == FetchReason.INVALID_MANUAL
    assert run(t, 1_002 * MS) == FetchReason.INVALID_MANUAL
    assert state(t)["invalidations"][MdInvalid.MANUAL] == 1
    t.book_update(1_003 * MS, update_id=11, snapshot=True)
    assert run(t, 1_004 * MS) == FetchReason.OK


def test_no_book_before_the_first_message_and_with_an_empty_side(tick):
    t = tick()
    assert run(t, 1_000 * MS) == FetchReason.NO_BOOK
    assert t.out["md_age_ns"] == -1
    t.book_update(1_000 * MS)
    t.inp["best_ask_tick"] = 2**62
    assert run(t, 1_001 * MS) == FetchReason.NO_BOOK


def test_crossed_book(tick):
    t = tick(bid=101, ask=101)
    t.book_update(1_000 * MS)
    assert run(t, 1_001 * MS) == FetchReason.CROSSED
    t2 = tick(bid=101, ask=101, fetch_md=dict(reject_crossed=False))
    t2.book_update(1_000 * MS)
    assert run(t2, 1_001 * MS) == FetchReason.OK


def test_precedence_invalid_over_stale(tick):
    t = tick(fetch_md=dict(seq_check="contiguous"))
    t.book_update(1_000 * MS, update_id=1)
    t.book_update(1_000 * MS, update_id=5)
    assert run(t, 5_000 * MS) == FetchReason.INVALID_GAP
