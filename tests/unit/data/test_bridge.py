"""The store -> event array bridge against a plain numpy reference."""

import numpy as np
import polars as pl
import pytest

from mmlab.data import bridge, store
from mmlab.data.schema import NUMPY_DTYPES
from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, event_dtype

T0 = 1_721_347_200_000_000_000  # 2024-07-19T00:00:00Z
DAY = store.NS_PER_DAY


def columns(n, seed=0, t0=T0, span=2 * DAY, tick=0.1):
    rng = np.random.default_rng(seed)
    ts_exch = t0 + np.sort(rng.integers(0, span, n))
    cols = {
        "ts_exch": ts_exch,
        "ts_local": ts_exch + rng.integers(0, 3_000_000, n),
        "kind": rng.integers(1, 6, n),
        "side": rng.choice([-1, 1], n),
        "price": rng.integers(500_000, 700_000, n) * tick,
        "qty": np.round(rng.random(n) * 5, 3),
        "update_id": np.arange(n) + 10,
        "batch_end": rng.random(n) < 0.4,
    }
    cols["ts_local"] = np.maximum.accumulate(cols["ts_local"])
    return {c: np.asarray(cols[c], dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS}


def write(root, cols, venue="binance-usdm", symbol="TESTUSDT", tick=0.1):
    store.write_days(root, venue, symbol, cols)
    meta = store.empty_meta(venue, symbol)
    meta.update(tick_size=tick, lot_size=0.001)
    store.write_meta(root, venue, symbol, meta)


def reference(cols, tick, symbol_id=0):
    """What the bridge must produce: numpy field by field."""
    ev = np.empty(len(cols["ts_exch"]), dtype=event_dtype)
    for c in ("ts_exch", "ts_local", "qty", "update_id", "kind", "side", "batch_end"):
        ev[c] = cols[c]
    with np.errstate(invalid="ignore"):
        ev["price_ticks"] = np.rint(cols["price"] / tick)
    ev["symbol_id"] = symbol_id
    return ev


def day_order(cols):
    """Rows in store order: by UTC day of ts_exch, then as given."""
    order = np.argsort(cols["ts_exch"] // DAY, kind="stable")
    return {c: v[order] for c, v in cols.items()}


def test_load_events_equals_reference_over_days_and_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "PART_ROWS", 700)  # several part files per day
    cols = columns(5000)
    write(tmp_path, cols)
    assert len(store.day_files(tmp_path, "binance-usdm", "TESTUSDT", "2024-07-19")) > 2
    ev, infos = bridge.load_events(tmp_path, "binance-usdm", "TESTUSDT")
    assert infos[0].tick_size == 0.1 and ev.dtype == event_dtype
    np.testing.assert_array_equal(ev, reference(day_order(cols), 0.1))
    chunks = list(bridge.iter_event_chunks(tmp_path, "binance-usdm", "TESTUSDT", symbol_id=3))
    assert len(chunks) > 4 and all(len(c) <= 700 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), reference(day_order(cols), 0.1, symbol_id=3))


def test_time_window_filters_on_ts_local(tmp_path):
    cols = columns(3000)
    write(tmp_path, cols)
    t_a, t_b = int(cols["ts_local"][700]), int(cols["ts_local"][2100])
    ev, _ = bridge.load_events(tmp_path, "binance-usdm", "TESTUSDT", start=t_a, end=t_b)
    keep = (cols["ts_local"] >= t_a) & (cols["ts_local"] < t_b)
    np.testing.assert_array_equal(ev, reference(day_order({c: v[keep] for c, v in cols.items()}), 0.1))
    ev2 = np.concatenate(list(bridge.iter_event_chunks(tmp_path, "binance-usdm", "TESTUSDT", t_a, t_b)))
    np.testing.assert_array_equal(ev, ev2)
    ev3, _ = bridge.load_events(tmp_path, "binance-usdm", "TESTUSDT", start="2024-07-20")
    assert ev3["ts_local"].min() >= T0 + DAY and len(ev3) == int((cols["ts_local"] >= T0 + DAY).sum())


def test_two_symbols_merge_by_ts_local_keeping_each_stream_order(tmp_path):
    a, b = columns(800, seed=1, span=DAY // 2), columns(600, seed=2, span=DAY // 2, tick=0.01)
    b["ts_local"][:10] = a["ts_local"][0]  # ties: stable merge keeps symbol order, then row order
    b["ts_local"] = np.maximum.accumulate(b["ts_local"])
    write(tmp_path, a, symbol="AAAUSDT")
    write(tmp_path, b, symbol="BBBUSDT", tick=0.01)
    ev, infos = bridge.load_events(tmp_path, "binance-usdm", ["AAAUSDT", "BBBUSDT"])
    assert [i.symbol_id for i in infos] == [0, 1]
    want = np.concatenate([reference(a, 0.1, 0), reference(b, 0.01, 1)])
    want = want[np.argsort(want["ts_local"], kind="stable")]
    np.testing.assert_array_equal(ev, want)
    assert np.all(np.diff(ev["ts_local"]) >= 0)


def test_price_to_ticks_rounds_and_marks_nan(tmp_path):
    cols = columns(6)
    cols["price"][:] = [0.30000000000000004, 65000.1 - 1e-9, 12.3, np.nan, -0.1, np.inf]
    ev = bridge._frame_to_events(cols, 0.1, 0)
    assert list(ev["price_ticks"][:3]) == [3, 650001, 123]
    assert ev["price_ticks"][3] == np.iinfo(np.int64).min and ev["price_ticks"][5] == np.iinfo(np.int64).min
    assert ev["price_ticks"][4] == -1


def test_differently_chunked_frame_is_converted_correctly():
    cols = columns(1000)
    parts = [pl.DataFrame({c: v[s] for c, v in cols.items()}) for s in (slice(0, 300), slice(300, 1000))]
    df = pl.concat(parts, rechunk=False)
    assert df["ts_exch"].n_chunks() == 2
    out = np.empty(1000, dtype=event_dtype)
    assert bridge._fill_from_frame(df, 0.1, 0, out, 0) == 1000
    np.testing.assert_array_equal(out, reference(cols, 0.1))
    # Columns chunked unlike each other take the contiguous path.
    df2 = df.with_columns(pl.Series("qty", cols["qty"]))
    assert df2["qty"].n_chunks() == 1
    out2 = np.empty(1000, dtype=event_dtype)
    bridge._fill_from_frame(df2, 0.1, 0, out2, 0)
    np.testing.assert_array_equal(out2, out)


def test_missing_data_and_bad_meta_name_the_fix(tmp_path):
    with pytest.raises(DataError, match="run `mmlab data ingest`"):
        bridge.load_events(tmp_path, "binance-usdm", "NOPEUSDT")
    meta = store.empty_meta("binance-usdm", "ZEROUSDT")
    meta["lot_size"] = 0.001
    store.write_meta(tmp_path, "binance-usdm", "ZEROUSDT", meta)
    with pytest.raises(DataError, match="tick_size must be > 0, got None"):
        bridge.load_events(tmp_path, "binance-usdm", "ZEROUSDT")


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(a[f], b[f]) for f in event_dtype.names)


def _cache_store(tmp_path, n=5_000):
    root = tmp_path / "store"
    store.write_days(root, "binance-usdm", "BTCUSDT", columns(n))
    meta = store.empty_meta("binance-usdm", "BTCUSDT")
    meta.update(tick_size=0.1, lot_size=0.001)
    store.write_meta(root, "binance-usdm", "BTCUSDT", meta)
    return root


def test_event_cache_is_written_reused_and_equal_to_a_fresh_decode(tmp_path):
    root = _cache_store(tmp_path)
    fresh, _ = bridge.load_events(root, "binance-usdm", "BTCUSDT", cache=False)
    cache_dir = root / "binance-usdm" / "BTCUSDT" / bridge.CACHE_DIR
    assert not cache_dir.exists()
    first, _ = bridge.load_events(root, "binance-usdm", "BTCUSDT")
    files = sorted(cache_dir.rglob("*.npy"))
    assert len(files) == sum(len(store.day_files(root, "binance-usdm", "BTCUSDT", d)) for d in store.list_days(root, "binance-usdm", "BTCUSDT"))
    second, _ = bridge.load_events(root, "binance-usdm", "BTCUSDT", start=T0 + DAY // 2, end=T0 + DAY + 3600 * 10**9)
    assert _same(first, fresh)
    sel = (fresh["ts_local"] >= T0 + DAY // 2) & (fresh["ts_local"] < T0 + DAY + 3600 * 10**9)
    assert _same(second, fresh[sel])
    chunks = np.concatenate(list(bridge.iter_event_chunks(root, "binance-usdm", "BTCUSDT", symbol_id=3)))
    assert (chunks["symbol_id"] == 3).all() and chunks["ts_local"].tolist() == fresh["ts_local"].tolist()


def test_event_cache_is_rebuilt_when_the_part_file_changes(tmp_path):
    root = _cache_store(tmp_path)
    bridge.load_events(root, "binance-usdm", "BTCUSDT")
    store.write_days(root, "binance-usdm", "BTCUSDT", columns(5_000, seed=1))  # a re-ingest rewrites the parts
    fresh, _ = bridge.load_events(root, "binance-usdm", "BTCUSDT", cache=False)
    cached, _ = bridge.load_events(root, "binance-usdm", "BTCUSDT")
    assert _same(cached, fresh)
    day = store.list_days(root, "binance-usdm", "BTCUSDT")[0]
    per_part = list((root / "binance-usdm" / "BTCUSDT" / bridge.CACHE_DIR / f"date={day}").glob("part-0000-*.npy"))
    assert len(per_part) == 1  # the stale array was removed


def test_a_time_window_reads_only_the_parts_that_overlap_it(tmp_path):
    root = tmp_path / "store"
    cols = columns(3_000, span=DAY // 2)
    day = store.day_of_ns(T0)
    store.clear_day(root, "binance-usdm", "BTCUSDT", day)
    for k in range(3):
        store.write_part(root, "binance-usdm", "BTCUSDT", day, k, {c: v[k * 1000 : (k + 1) * 1000] for c, v in cols.items()})
    meta = store.empty_meta("binance-usdm", "BTCUSDT")
    meta.update(tick_size=0.1, lot_size=0.001)
    store.write_meta(root, "binance-usdm", "BTCUSDT", meta)
    t = cols["ts_local"]
    start, end = int(t[1200]), int(t[1800])
    files = bridge._files_in_range(root, "binance-usdm", "BTCUSDT", start, end)
    assert [f.rsplit("/", 1)[-1] for f in files] == ["part-0001.parquet"]
    ev, _ = bridge.load_events(root, "binance-usdm", "BTCUSDT", start=start, end=end)
    assert ev["ts_local"].tolist() == t[(t >= start) & (t < end)].tolist()


# ------------------------------------------------------------------------------------- replay windows


def replay_reference(ev):
    """What the simulator replays of ``ev``: BBO rows dropped, and those rows in stable ts_exch order."""
    from mmlab.types import Kind

    local = ev[ev["kind"] != Kind.BBO]
    return local, local[np.argsort(local["ts_exch"], kind="stable")], int((ev["kind"] == Kind.BBO).sum())


def _shuffled_exch(cols, seed):
    """Feed latency that varies a lot, so ts_exch order differs from ts_local order, with ts_exch ties."""
    rng = np.random.default_rng(seed)
    cols = dict(cols)
    cols["ts_exch"] = cols["ts_local"] - rng.integers(0, 50, len(cols["ts_local"])) * 1_000_000_000
    return cols


@pytest.mark.parametrize("cache", [True, False])
def test_replay_window_equals_load_events_without_bbo_in_exchange_order(tmp_path, monkeypatch, cache):
    monkeypatch.setattr(store, "PART_ROWS", 600)  # several parts per day: windows cross part boundaries
    cols = _shuffled_exch(columns(4000, span=DAY // 2), seed=4)
    write(tmp_path, cols)
    t = np.sort(cols["ts_local"])
    for start, end in ((None, None), (int(t[100]), int(t[2900])), (int(t[1000]), int(t[1001])), (int(t[-1]) + 1, None)):
        ev, _ = bridge.load_events(tmp_path, "binance-usdm", "TESTUSDT", start, end)
        w = bridge.load_replay_window(tmp_path, "binance-usdm", "TESTUSDT", start, end, cache=cache)
        local, exch, n_bbo = replay_reference(ev)
        assert _same(w.local, local) and _same(w.exch, exch) and w.n_bbo == n_bbo, (start, end)
        assert w.local.flags.writeable and w.exch.flags.c_contiguous
    files = list((tmp_path / "binance-usdm" / "TESTUSDT" / bridge.CACHE_DIR).rglob(f"*{bridge.REPLAY_SUFFIX}"))
    assert (len(files) > 2) == cache


def test_replay_window_of_two_symbols_merges_like_load_events(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "PART_ROWS", 500)
    a = _shuffled_exch(columns(1500, seed=1, span=DAY // 4), seed=5)
    b = _shuffled_exch(columns(1200, seed=2, span=DAY // 4, tick=0.01), seed=6)
    b["ts_local"][:20] = a["ts_local"][3]  # ts_local ties across symbols
    b["ts_local"] = np.maximum.accumulate(b["ts_local"])
    b["ts_exch"][:40] = a["ts_exch"][5]  # ts_exch ties across symbols
    write(tmp_path, a, symbol="AAAUSDT")
    write(tmp_path, b, symbol="BBBUSDT", tick=0.01)
    t = np.sort(a["ts_local"])
    for syms in (["AAAUSDT", "BBBUSDT"], ["BBBUSDT", "AAAUSDT"]):
        for start, end in ((None, None), (int(t[200]), int(t[1300]))):
            ev, _ = bridge.load_events(tmp_path, "binance-usdm", syms, start, end)
            w = bridge.load_replay_window(tmp_path, "binance-usdm", syms, start, end)
            local, exch, n_bbo = replay_reference(ev)
            assert _same(w.local, local) and _same(w.exch, exch) and w.n_bbo == n_bbo
            assert [i.symbol for i in w.infos] == syms


def test_replay_index_is_rebuilt_when_the_part_changes_or_is_damaged(tmp_path):
    root = _cache_store(tmp_path)
    bridge.load_replay_window(root, "binance-usdm", "BTCUSDT")
    store.write_days(root, "binance-usdm", "BTCUSDT", columns(5_000, seed=1))  # a re-ingest rewrites the parts
    w = bridge.load_replay_window(root, "binance-usdm", "BTCUSDT")
    local, exch, n_bbo = replay_reference(bridge.load_events(root, "binance-usdm", "BTCUSDT", cache=False)[0])
    assert _same(w.local, local) and _same(w.exch, exch) and w.n_bbo == n_bbo
    cache_dir = root / "binance-usdm" / "BTCUSDT" / bridge.CACHE_DIR
    day = store.list_days(root, "binance-usdm", "BTCUSDT")[0]
    per_part = sorted((cache_dir / f"date={day}").glob("part-0000-*"))
    assert [p.name.endswith(bridge.REPLAY_SUFFIX) for p in per_part] == [False, True]  # the stale pair is gone
    per_part[1].write_bytes(b"not an array")
    w2 = bridge.load_replay_window(root, "binance-usdm", "BTCUSDT")
    assert _same(w2.exch, exch)
    np.load(per_part[1])  # rewritten


def test_exch_order_and_take_rows_match_numpy():
    ev = bridge._frame_to_events(_shuffled_exch(columns(3000, seed=9), seed=9), 0.1, 2)
    np.testing.assert_array_equal(bridge.exch_order(ev), ev[np.argsort(ev["ts_exch"], kind="stable")])
    idx = np.random.default_rng(0).integers(0, len(ev), 500)
    np.testing.assert_array_equal(bridge.take_rows(ev, idx), ev[idx])
    assert len(bridge.exch_order(ev[:0])) == 0
