"""`mmlab calib aggregate --symbols` takes repeated, comma-separated and quoted space-separated lists alike."""

import json
from pathlib import Path

from typer.testing import CliRunner

from mmlab.calib.loggers import FillLogger, PipelineTickLogger
from mmlab.cli import app

T0 = 1_721_260_800_000_000_000  # 2024-07-18T00:00:00Z
S = 1_000_000_000


def _feeds(d: Path) -> None:
    with FillLogger(d) as fl, PipelineTickLogger(d, sample_every=1) as tl:
        for sym in ("BTCUSDT", "ETHUSDT", "XRPUSDT"):
            for i in range(20):
                tl.log(ts_ns=T0 + i * S, symbol=sym, tick_total_ms=1.0, cache_hit=True, cache_age_ms=5.0,
                       used_stale=False, deadline_miss=False, ws_gap_ms=10.0, n_orders_sent=1)
            fl.log(ts_ns=T0, symbol=sym, side=1, price=100.0, qty=1.0, maker=True, slip_bps=0.5, fee=-0.01,
                   markout_bps_1s=2.0, latency_ms=10.0)


def _symbols(tmp_path: Path, name: str, *symbol_args: str) -> list[str]:
    out = tmp_path / name
    args = ["calib", "aggregate", "--from", "2024-07-18T00:00:00", "--to", "2024-07-18T00:05:00", "--feeds",
            str(tmp_path / "feeds"), "--out", str(out)]
    for s in symbol_args:
        args += ["--symbols", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    saved = json.loads(next(out.glob("calib_*.json")).read_text())
    return sorted({row["symbol"] for row in saved["all_intervals"]})


def test_symbol_lists_in_every_form(tmp_path):
    _feeds(tmp_path / "feeds")
    want = ["BTCUSDT", "ETHUSDT"]
    assert _symbols(tmp_path, "spaces", "BTCUSDT ETHUSDT") == want
    assert _symbols(tmp_path, "commas", "BTCUSDT,ETHUSDT") == want
    assert _symbols(tmp_path, "repeated", "BTCUSDT", "ETHUSDT") == want
    assert _symbols(tmp_path, "mixed", " BTCUSDT, ETHUSDT ") == want
    assert _symbols(tmp_path, "all") == ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
