"""Golden numbers of every strategy of strategies/ on the shared Binance USD-M BTCUSDT capture (8 minutes).

Same data, window and simulator settings as tests/acceptance/test_grid_golden.py. ``strategies.grid`` is the
reference grid through the pipeline stages: its numbers are the reference grid's. When a change to the simulator
or the stages moves the numbers on purpose, refresh the dict with

    python tests/acceptance/test_strategies_golden.py

which prints the current values in the format of ``GOLDEN``.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmlab.config import load_config
from mmlab.data.ingest import IngestOptions, ingest
from mmlab.sim.engine import WALL_TIME_KEYS, run_backtest

pytestmark = pytest.mark.real_data

KEYS = ("n_fills", "n_orders", "pnl_net", "fees", "position_final")
STRATEGIES = ("strategies.grid", "avellaneda_stoikov", "glft", "queue_mm", "imbalance_alpha", "example_custom")

GOLDEN = {
    "strategies.grid": {"n_fills": 436, "n_orders": 1_407, "pnl_net": -2.5277467100003017, "fees": -1.3931532900000003, "position_final": 0.010000000000000002},
    "avellaneda_stoikov": {"n_fills": 134, "n_orders": 902, "pnl_net": -0.6880830900001091, "fees": -0.42821691000000006, "position_final": -0.002},
    "glft": {"n_fills": 131, "n_orders": 583, "pnl_net": -0.8061301800001992, "fees": -0.41861982000000003, "position_final": 0.001},
    "queue_mm": {"n_fills": 151, "n_orders": 244, "pnl_net": -0.2995119299999127, "fees": -0.4825380700000001, "position_final": -0.005},
    "imbalance_alpha": {"n_fills": 150, "n_orders": 806, "pnl_net": -0.8348692700002552, "fees": -0.47933073000000015, "position_final": -0.004},
    "example_custom": {"n_fills": 131, "n_orders": 650, "pnl_net": -0.8095330199994877, "fees": -0.4186169800000001, "position_final": 0.001},
}

SIM = {"queue_model": "risk_averse", "exchange_model": "no_partial", "latency_model": "constant",
       "entry_latency_ms": 10, "response_latency_ms": 10, "maker_fee": -0.00005, "taker_fee": 0.0007}
#: The reference grid's [strategy] keys of test_grid_golden.py, for the grid preset.
GRID_KEYS = {"grid_num": 5, "interval_ms": 100, "half_spread_ticks": 2, "skew_ticks": 1.0, "order_qty": 0.001,
             "max_position": 0.01}
SOURCES = ("binance_usdm/usdm_btcusdt_20240718.gz", "binance_usdm/usdm_btcusdt_20240719.gz")


def strategy_config(store: Path, name: str):
    """The config of strategy ``name`` on the BTCUSDT store: its preset defaults (the grid: the reference keys)."""
    strategy = {"name": name, **(GRID_KEYS if name == "strategies.grid" else {})}
    return load_config({"data": {"root": str(store), "venue": "binance-usdm", "symbols": ["BTCUSDT"]}, "sim": SIM,
                        "strategy": strategy})


def build_store(real_data: Path, root: Path) -> Path:
    ingest([real_data / s for s in SOURCES], "binance-usdm", root, IngestOptions())
    return root


def golden_values(summary: dict) -> dict:
    return {k: summary[k] for k in KEYS}


@pytest.fixture(scope="module")
def btc_store(real_data, tmp_path_factory):
    return build_store(real_data, tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def results(btc_store):
    return {name: run_backtest(strategy_config(btc_store, name)) for name in STRATEGIES}


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_golden_numbers(results, name):
    s = results[name].summary
    for key, want in GOLDEN[name].items():
        if isinstance(want, int):
            assert s[key] == want, f"{name}: {key}"
        else:
            assert s[key] == pytest.approx(want, rel=1e-9, abs=1e-12), f"{name}: {key}"


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_quotes_and_fills(results, name):
    s = results[name].summary
    assert s["n_orders"] > 50 and s["n_fills"] > 20, name
    assert s["n_maker_fills"] == s["n_fills"], f"{name}: post-only quoting took liquidity"


_RERUN = """
import hashlib, json, sys
from pathlib import Path
sys.path.insert(0, {here!r})
from test_strategies_golden import strategy_config
from mmlab.sim.engine import WALL_TIME_KEYS, run_backtest
r = run_backtest(strategy_config(Path({store!r}), {name!r}))
digest = hashlib.sha256(r.fills.write_ipc(None).getvalue() + r.orders.write_ipc(None).getvalue()).hexdigest()
print(json.dumps({{"summary": {{k: v for k, v in r.summary.items() if k not in WALL_TIME_KEYS}}, "digest": digest}},
                 default=str))
"""


@pytest.mark.parametrize("name", ["glft", "example_custom"])
def test_rerun_in_another_process_is_identical(btc_store, results, name):
    import hashlib

    code = _RERUN.format(here=str(Path(__file__).parent), store=str(btc_store), name=name)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    r = results[name]
    want = {k: v for k, v in r.summary.items() if k not in WALL_TIME_KEYS}
    assert got["summary"] == json.loads(json.dumps(want, default=str))
    digest = hashlib.sha256(r.fills.write_ipc(None).getvalue() + r.orders.write_ipc(None).getvalue()).hexdigest()
    assert got["digest"] == digest


def _print_golden() -> None:
    """Print ``GOLDEN`` as it is now (run this file as a script)."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from conftest import real_data_path

    real = real_data_path()
    if real is None:
        sys.exit("../shared/data/real is absent")
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(real, Path(tmp))
        print("GOLDEN = {")
        for name in STRATEGIES:
            s = golden_values(run_backtest(strategy_config(store, name)).summary)
            body = ", ".join(f'"{k}": {v:_}' if isinstance(v, int) else f'"{k}": {v!r}' for k, v in s.items())
            print(f'    "{name}": {{{body}}},')
        print("}")


if __name__ == "__main__":
    _print_golden()
