"""``mmlab data verify``: hand-built stores with one defect each, and the real Binance captures."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mmlab.cli import app
from mmlab.data import store
from mmlab.data.schema import NUMPY_DTYPES
from mmlab.data.verify import verify, verify_stream
from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, Kind

DEPTH, TRADE, CLEAR, SNAP, BBO = (int(k) for k in (Kind.DEPTH, Kind.TRADE, Kind.CLEAR, Kind.SNAPSHOT, Kind.BBO))
T0 = 1_721_347_200_000_000_000  # 2024-07-19T00:00:00Z
MS = 1_000_000


def write_stream(root, rows, venue="binance-usdm", symbol="TESTUSDT", tick=0.1, gaps=None):
    """rows: (ts_ms, kind, side, price, qty, update_id, batch_end); ts_exch = ts_local - 1 ms."""
    cols = {c: [] for c in EVENT_COLUMNS}
    for ts_ms, kind, side, price, qty, uid, be in rows:
        cols["ts_local"].append(T0 + ts_ms * MS)
        cols["ts_exch"].append(T0 + ts_ms * MS - MS)
        cols["kind"].append(kind)
        cols["side"].append(side)
        cols["price"].append(price)
        cols["qty"].append(qty)
        cols["update_id"].append(uid)
        cols["batch_end"].append(be)
    cols = {c: np.array(v, dtype=NUMPY_DTYPES[c]) for c, v in cols.items()}
    store.write_days(root, venue, symbol, cols)
    meta = store.empty_meta(venue, symbol)
    meta["tick_size"] = tick
    meta["lot_size"] = 0.001
    meta["gaps"] = gaps or []
    store.write_meta(root, venue, symbol, meta)
    return root


def snapshot(ts, uid, bids=((100.0, 1.0), (99.9, 2.0)), asks=((100.1, 1.5), (100.2, 3.0))):
    rows = [(ts, CLEAR, 0, 0.0, 0.0, uid, False)]
    levels = [(1, p, q) for p, q in bids] + [(-1, p, q) for p, q in asks]
    for k, (side, p, q) in enumerate(levels):
        rows.append((ts, SNAP, side, p, q, uid, k == len(levels) - 1))
    return rows


def depth(ts, uid, *levels):
    """levels: (side, price, qty)."""
    return [(ts, DEPTH, s, p, q, uid, k == len(levels) - 1) for k, (s, p, q) in enumerate(levels)]


def bbo(ts, uid, bid, ask):
    return [(ts, BBO, 1, bid, 1.0, uid, False), (ts, BBO, -1, ask, 1.0, uid, True)]


def clean_rows():
    return (
        snapshot(1, 100)
        + bbo(2, 100, 100.0, 100.1)
        + depth(3, 101, (1, 100.0, 0.0), (-1, 100.1, 4.0))  # best bid 100.0 deleted -> 99.9
        + bbo(4, 101, 99.9, 100.1)
        + [(5, TRADE, -1, 99.9, 0.5, 7001, True)]
        + bbo(6, 103, 99.9, 100.0)  # the BBO row arrives before its depth message
        + depth(7, 103, (-1, 100.0, 1.0))
        + bbo(8, 150, 99.9, 100.0)  # no depth message with this id
        + depth(9, 104, (1, 99.8, 1.0))
    )


def test_clean_stream_passes_and_joins_bbo_both_ways(tmp_path):
    write_stream(tmp_path, clean_rows())
    rep = verify(tmp_path)
    assert rep["ok"]
    (s,) = rep["streams"]
    assert s["events"] == len(clean_rows())
    assert s["sequence_gaps"] == 0 and s["crossed_books"] == 0 and s["bad_values"] == 0
    assert s["ts_non_monotonic"] == 0 and s["problems"] == []
    assert s["book_checks"] == 4
    assert s["bbo_checked"] == 6 and s["bbo_agreement"] == 1.0 and s["bbo_unmatched"] == 2


def test_crossed_book_is_detected(tmp_path):
    rows = snapshot(1, 100) + depth(3, 101, (1, 100.2, 1.0)) + depth(4, 102, (-1, 100.1, 0.0), (-1, 100.2, 0.0))
    write_stream(tmp_path, rows)
    s = verify(tmp_path)["streams"][0]
    assert not s["ok"]
    assert s["crossed_books"] == 1 and s["book_checks"] == 3
    assert any("crossed book after 1 of 3 messages" in p for p in s["problems"])


def test_rows_before_the_first_snapshot_are_not_checked_for_crossing(tmp_path):
    rows = depth(0, 90, (1, 101.0, 1.0), (-1, 100.0, 1.0)) + snapshot(1, 100)
    write_stream(tmp_path, rows)
    s = verify(tmp_path)["streams"][0]
    assert s["ok"] and s["crossed_books"] == 0 and s["book_checks"] == 1


def test_rewind_is_detected(tmp_path):
    rows = snapshot(1, 100) + depth(2, 105, (1, 99.0, 1.0)) + depth(3, 104, (1, 98.0, 1.0))
    write_stream(tmp_path, rows)
    s = verify(tmp_path)["streams"][0]
    assert not s["ok"]
    assert s["rewinds"] == 1 and s["gaps_stored"] == 1 and s["sequence_gaps"] == 1
    assert any("update_id 105 -> 104" in p for p in s["problems"])


def test_repeated_update_id_is_a_rewind_but_first_diff_may_end_at_the_snapshot(tmp_path):
    rows = snapshot(1, 100) + depth(2, 100, (1, 99.0, 1.0)) + depth(3, 101, (1, 98.0, 1.0)) + depth(4, 101, (1, 97.0, 1.0))
    write_stream(tmp_path, rows)
    s = verify(tmp_path)["streams"][0]
    assert s["rewinds"] == 1


def test_nan_and_non_positive_values_are_detected(tmp_path):
    rows = snapshot(1, 100) + depth(2, 101, (1, 99.0, float("nan"))) + [(3, TRADE, 1, 0.0, 1.0, 5, True)]
    write_stream(tmp_path, rows)
    s = verify(tmp_path)["streams"][0]
    assert not s["ok"] and s["bad_values"] == 2


def test_non_monotonic_ts_local_is_detected(tmp_path):
    rows = snapshot(5, 100) + depth(4, 101, (1, 99.0, 1.0)) + depth(6, 102, (1, 98.0, 1.0))
    write_stream(tmp_path, rows)
    s = verify(tmp_path)["streams"][0]
    assert not s["ok"] and s["ts_non_monotonic"] == 1
    assert s["ts_exch_non_monotonic"] == 1  # reported separately, not a failure on its own


def test_bbo_disagreement_fails(tmp_path):
    rows = snapshot(1, 100) + bbo(2, 100, 100.0, 100.2)
    write_stream(tmp_path, rows)
    s = verify(tmp_path)["streams"][0]
    assert not s["ok"] and s["bbo_checked"] == 2 and s["bbo_agreement"] == 0.5
    assert any("1 of 2 rows (first at update_id 100)" in p for p in s["problems"])


def test_bybit_deltas_must_rise_by_one_and_snapshots_rebase(tmp_path):
    rows = (
        snapshot(1, 500)
        + depth(2, 501, (1, 99.0, 1.0))
        + depth(3, 501, (1, 99.0, 1.5))  # an equal u is a resend
        + depth(4, 503, (1, 98.0, 1.0))  # 502 missing
        + snapshot(5, 1)  # service restart
        + depth(6, 2, (1, 98.0, 1.0))
    )
    write_stream(tmp_path, rows, venue="bybit-linear")
    s = verify(tmp_path)["streams"][0]
    assert s["seq_rule"] == "CONTIGUOUS"
    assert s["jumps"] == 1 and s["rewinds"] == 0 and not s["ok"]
    assert any("update_id 501 -> 503" in p for p in s["problems"])


def test_stream_without_snapshots_is_checked_from_the_start(tmp_path):
    rows = depth(1, -1, (1, 100.0, 1.0), (-1, 100.1, 1.0)) + depth(2, -1, (1, 100.0, 0.0)) + depth(3, -1, (1, 100.2, 1.0))
    write_stream(tmp_path, rows, venue="tardis-binance-futures")
    s = verify(tmp_path)["streams"][0]
    assert s["book_checks"] == 3 and s["crossed_books"] == 1 and s["seq_rule"] == "NONE"


def test_ingest_gaps_handled_pass_unhandled_fail(tmp_path):
    gap = {"from_update_id": 102, "to_update_id": 110, "file": "x.gz", "line": 7}
    write_stream(tmp_path / "a", clean_rows(), gaps=[dict(gap, handled="quarantined until next snapshot")])
    s = verify(tmp_path / "a")["streams"][0]
    assert s["ok"] and s["sequence_gaps"] == 1 and s["gaps_ingest"] == 1 and s["gaps_stored"] == 0
    assert s["notes"] == ["1 ingest gap(s) quarantined and re-synced from the next snapshot"]
    write_stream(tmp_path / "b", clean_rows(), gaps=[dict(gap, handled=None)])
    s = verify(tmp_path / "b")["streams"][0]
    assert not s["ok"] and s["gaps_ingest_unhandled"] == 1


def test_state_carries_across_days_and_part_files(tmp_path):
    day = 86_400_000
    rows = snapshot(day - 10, 100) + depth(day - 5, 101, (1, 99.0, 1.0)) + depth(day + 5, 101, (1, 98.0, 1.0))
    rows += depth(day + 6, 102, (1, 100.1, 1.0))  # crosses the ask of the snapshot written the day before
    write_stream(tmp_path, rows)
    assert store.list_days(tmp_path, "binance-usdm", "TESTUSDT") == ["2024-07-19", "2024-07-20"]
    s = verify(tmp_path)["streams"][0]
    assert s["rewinds"] == 1 and s["crossed_books"] == 1 and s["events"] == len(rows)


def test_filters_and_missing_stream(tmp_path):
    write_stream(tmp_path, clean_rows(), symbol="AAAUSDT")
    write_stream(tmp_path, clean_rows() + depth(20, 99, (1, 99.0, 1.0)), symbol="BBBUSDT")
    rep = verify(tmp_path)
    assert [s["symbol"] for s in rep["streams"]] == ["AAAUSDT", "BBBUSDT"] and not rep["ok"]
    assert verify(tmp_path, symbol="aaausdt")["ok"]
    with pytest.raises(DataError, match=r"no data for binance-spot under .* \(it holds binance-usdm/AAAUSDT"):
        verify(tmp_path, venue="binance-spot")


@pytest.mark.parametrize(
    "rows",
    [
        snapshot(1, 100) + depth(3, 101, (1, 100.2, 1.0)),  # crossed
        snapshot(1, 100) + depth(2, 105, (1, 99.0, 1.0)) + depth(3, 104, (1, 98.0, 1.0)),  # rewind
        snapshot(1, 100) + depth(2, 101, (1, 99.0, float("nan"))),  # NaN
        snapshot(5, 100) + depth(4, 101, (1, 99.0, 1.0)),  # ts_local back
    ],
    ids=["crossed", "rewind", "nan", "ts_back"],
)
def test_cli_exits_1_on_each_failure(tmp_path, rows):
    write_stream(tmp_path, rows)
    res = CliRunner().invoke(app, ["data", "verify", str(tmp_path), "--json"])
    assert res.exit_code == 1, res.output
    rep = json.loads(res.output)
    assert not rep["ok"] and rep["streams"][0]["problems"]


def test_cli_passes_on_clean_store_and_prints_table(tmp_path):
    write_stream(tmp_path, clean_rows())
    res = CliRunner().invoke(app, ["data", "verify", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "TESTUSDT" in res.output
    res = CliRunner().invoke(app, ["data", "verify", str(tmp_path), "--venue", "bybit-spot"])
    assert res.exit_code == 2 and "no data for bybit-spot" in res.output


# ------------------------------------------------------------------------------------------------ real captures

BINANCE_CAPTURES = {
    # name: (venue, files, symbol, bbo_checked, book_checks)
    "usdm_btcusdt_20240718": ("binance-usdm", ["binance_usdm/usdm_btcusdt_20240718.gz", "binance_usdm/usdm_btcusdt_20240719.gz"], "BTCUSDT", 1250, 9018),
    "usdm_ethusdt_20240718": ("binance-usdm", ["binance_usdm/usdm_ethusdt_20240718.gz", "binance_usdm/usdm_ethusdt_20240719.gz"], "ETHUSDT", 1668, 8925),
    "usdm_btcusdt_20240808": ("binance-usdm", ["binance_usdm/usdm_btcusdt_20240808.gz"], "BTCUSDT", 1258, 6548),
    "nexousdt_20240723": ("binance-spot", [f"binance_spot/nexousdt_202407{d}.dat.gz" for d in (23, 24, 25)], "NEXOUSDT", 34936, 99031),
}


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(BINANCE_CAPTURES))
def test_real_binance_captures_verify_clean(real_data, tmp_path, name):
    from mmlab.data.ingest import ingest

    venue, files, symbol, bbo_checked, book_checks = BINANCE_CAPTURES[name]
    ingest([real_data / f for f in files], venue, tmp_path)
    s = verify_stream(tmp_path, venue, symbol)
    assert s["ok"], s["problems"]
    assert s["sequence_gaps"] == 0 and s["crossed_books"] == 0 and s["bad_values"] == 0
    assert s["ts_non_monotonic"] == 0
    assert s["bbo_agreement"] == 1.0
    assert s["bbo_checked"] == bbo_checked
    assert s["book_checks"] == book_checks


@pytest.mark.real_data
def test_real_bybit_deltas_are_contiguous(real_data, tmp_path):
    from mmlab.data.ingest import ingest

    ingest([real_data / "bybit" / "BYBIT.jsonl.gz"], "bybit-linear", tmp_path / "ws")
    ingest([real_data / "bybit" / "xrpusdt-ob500.data.zip"], "bybit-dump", tmp_path / "dump")
    rows = verify(tmp_path / "ws")["streams"] + verify(tmp_path / "dump")["streams"]
    got = {s["symbol"]: (s["ok"], s["seq_rule"], s["jumps"], s["rewinds"], s["crossed_books"], s["book_checks"]) for s in rows}
    assert got == {
        "BTCUSDT": (True, "CONTIGUOUS", 0, 0, 0, 414),
        "DOGEUSDT": (True, "CONTIGUOUS", 0, 0, 0, 380),
        "ETHUSDT": (True, "CONTIGUOUS", 0, 0, 0, 421),
        "SOLUSDT": (True, "CONTIGUOUS", 0, 0, 0, 383),
        "XRPUSDT": (True, "CONTIGUOUS", 0, 0, 0, 50),
    }
