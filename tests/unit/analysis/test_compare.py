"""Run comparison: metric deltas, config differences, side-by-side report."""

import json
import math

import pytest

from mmlab.analysis.compare import compare_runs, config_diff, metric_deltas
from mmlab.analysis.metrics import numeric_summary


def test_compare_deltas_of_two_half_spreads(run_dirs, tmp_path):
    a_dir, b_dir = run_dirs[2.0], run_dirs[1.0]
    res = compare_runs(a_dir, b_dir, tmp_path / "cmp")
    sa = numeric_summary(json.loads((a_dir / "summary.json").read_text()))
    sb = numeric_summary(json.loads((b_dir / "summary.json").read_text()))
    assert set(res["metrics"]) == set(sa) | set(sb)
    for key in ("pnl_net", "n_fills", "fees", "volume_qty", "markout_bps_1s", "per_symbol.SYNTHUSDT.pnl_net"):
        m = res["metrics"][key]
        assert m["a"] == sa[key] and m["b"] == sb[key], key
        assert m["delta"] == pytest.approx(sb[key] - sa[key]), key
        if sa[key]:
            assert m["pct"] == pytest.approx(100 * (sb[key] - sa[key]) / abs(sa[key])), key
    # A tighter quote changes what fills: the runs must differ.
    assert res["metrics"]["n_fills"]["delta"] != 0 or res["metrics"]["pnl_net"]["delta"] != 0
    assert res["config_diff"] == {"strategy.half_spread_ticks": {"a": 2.0, "b": 1.0}}
    for side in ("a", "b"):
        t = res["pnl_decomposition"][side]
        assert t["spread_capture"] + t["inventory_pnl"] - t["fees"] == pytest.approx(t["pnl"], rel=1e-6)

    html = (tmp_path / "cmp" / "compare.html").read_text()
    assert res["report"] == str(tmp_path / "cmp" / "compare.html")
    for section in ("config_diff", "metrics", "pnl", "equity", "markouts"):
        assert f'<section id="{section}">' in html, section
    assert html.count("data:image/png;base64,") == 2
    assert (tmp_path / "cmp" / "equity_compare.png").stat().st_size > 2000
    assert (tmp_path / "cmp" / "markouts_compare.png").stat().st_size > 2000
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text()) == res


def test_metric_deltas_handle_absent_null_and_zero_values():
    d = metric_deltas({"x": 0.0, "y": 2, "only_a": 1.0, "n": None, "flag": True},
                      {"x": 1.5, "y": 3, "only_b": 4.0, "n": 2.0, "flag": False})
    assert d["x"] == {"a": 0.0, "b": 1.5, "delta": 1.5, "pct": None}
    assert d["y"] == {"a": 2, "b": 3, "delta": 1, "pct": 50.0}
    assert d["only_a"] == {"a": 1.0, "b": None, "delta": None, "pct": None}
    assert d["only_b"] == {"a": None, "b": 4.0, "delta": None, "pct": None}
    assert d["n"]["delta"] is None
    assert "flag" not in d
    neg = metric_deltas({"pnl": -2.0}, {"pnl": -1.0})["pnl"]
    assert neg["pct"] == 50.0 and not math.isnan(neg["delta"])


def test_config_diff_lists_only_changed_keys():
    a = {"strategy": {"half_spread_ticks": 2.0, "grid_num": 5}, "sim": {"seed": 0}}
    b = {"strategy": {"half_spread_ticks": 2.0, "grid_num": 3}, "sim": {"seed": 0, "extra": 1}}
    assert config_diff(a, b) == {"sim.extra": {"a": None, "b": 1}, "strategy.grid_num": {"a": 5, "b": 3}}
