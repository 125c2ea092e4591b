"""Validation against hftbacktest 2.4.4: the grid on the real BTCUSDT and ETHUSDT captures (2024-07-18/19).

Both engines replay identical events (our store converted to hftbacktest's format, BBO rows dropped) with the
grid of the golden parity test (5 orders a side every 100 ms, half spread 2 ticks, skew 1, 0.001 per order,
max position 0.01), the no-partial-fill exchange and a constant 10 ms / 10 ms latency, under two queue models:

- (a) risk_averse: must be identical (same fills, same PnL and fees to float rounding);
- (b) power_prob with n = 2: must agree within 1 % (fill count, equity, fees).

hftbacktest does not return a fill list: its fills are read from its local order states at every tick
(orders with status FILLED: exchange timestamp, exec price tick, side, exec qty; each is seen once because the
grid clears inactive orders right after). Fills are matched as multisets of (ts_exch, price_tick, side, qty).
PnL: equity at the last decision tick = balance + position * local mid - fees, each engine with its own state.

    python benchmarks/validate_hftbacktest.py [--root DIR]

Exits non-zero if (a) is not identical or (b) differs by more than 1 %.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hbt_grid import run_grid_hbt

REPO = Path(__file__).resolve().parents[1]
REAL = (REPO / ".." / "shared" / "data" / "real" / "binance_usdm").resolve()
SYMBOLS = {"BTCUSDT": "btcusdt", "ETHUSDT": "ethusdt"}
CASES = {"a": ("risk_averse", 2.0), "b": ("power_prob", 2.0)}
TOL_B = 0.01
#: Absolute tolerances of "identical" money figures (simultaneous fills may be summed in another order).
ATOL_MONEY = 1e-9


def _store(root: Path | None) -> Path:
    from mmlab.data.ingest import IngestOptions, ingest

    root = root or Path(tempfile.mkdtemp(prefix="validate_hbt_"))
    for sym, f in SYMBOLS.items():
        if not (root / "binance-usdm" / sym / "_meta.json").exists():
            ingest([REAL / f"usdm_{f}_20240718.gz", REAL / f"usdm_{f}_20240719.gz"], "binance-usdm", root,
                   IngestOptions())
    return root


def _rel(a: float, b: float) -> float:
    d = abs(a - b)
    return 0.0 if d == 0 else d / max(abs(a), abs(b))


def _fill_keys(ts, px_tick, side, qty) -> Counter:
    return Counter(zip(np.asarray(ts, np.int64).tolist(), np.asarray(px_tick, np.int64).tolist(),
                       np.asarray(side, np.int64).tolist(), np.round(np.asarray(qty, float), 9).tolist()))


def compare(ev, info, queue_model: str, queue_power: float) -> dict:
    from mmlab.config import load_config
    from mmlab.sim.engine import SymbolSpec, run_backtest

    cfg = load_config({
        "strategy": {"grid_num": 5, "interval_ms": 100, "half_spread_ticks": 2, "skew_ticks": 1.0, "order_qty": 0.001,
                     "max_position": 0.01},
        "sim": {"queue_model": queue_model, "queue_power": queue_power, "exchange_model": "no_partial",
                "latency_model": "constant", "entry_latency_ms": 10, "response_latency_ms": 10,
                "maker_fee": -0.00005, "taker_fee": 0.0007},
    })
    tick, lot = info.tick_size, info.lot_size
    out, hf = run_grid_hbt(ev, tick, lot, cfg)
    ours = run_backtest(cfg, events=ev, symbols=[SymbolSpec(info.symbol, tick, lot)])
    f, s = ours.fills, ours.state
    mine = _fill_keys(f["ts_exch"].to_numpy(), f["price_ticks"].to_numpy(), f["side"].to_numpy(), f["qty"].to_numpy())
    theirs = _fill_keys(hf["ts_exch"], hf["price_ticks"], hf["side"], hf["qty"])
    matched = sum((mine & theirs).values())
    last = s.row(s.height - 1, named=True)
    eq_m = last["cash"] + last["position"] * last["mid"] - last["fees"]
    pos_h, bal_h, fee_h, _, mid_h = out[-1]
    eq_h = bal_h + pos_h * mid_h - fee_h
    return {"ticks": (s.height, len(out)), "fills": (f.height, len(hf)), "num_trades_hbt": int(out[-1, 3]),
            "matched": matched, "equity": (eq_m, eq_h), "fees": (last["fees"], fee_h),
            "position": (last["position"], pos_h), "fees_fill_sum": float(f["fee"].sum()) if f.height else 0.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=None, help="store holding both symbols (ingested if absent)")
    args = ap.parse_args()
    if not REAL.is_dir():
        sys.exit(f"{REAL} is absent: this validation replays the shared Binance USD-M captures")
    root = _store(args.root)
    try:
        return _validate(root)
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)


def _validate(root: Path) -> int:
    from mmlab.data.bridge import load_events

    ok = True
    for sym in SYMBOLS:
        ev, infos = load_events(root, "binance-usdm", [sym])
        for case, (qm, power) in CASES.items():
            r = compare(ev, infos[0], qm, power)
            nm, nh = r["fills"]
            em, eh = r["equity"]
            fm, fh = r["fees"]
            label = f"({case}) {qm}" + (f"(n={power:g})" if qm.startswith("power") else "")
            print(f"{sym} {label} + no_partial + constant 10/10 ms  [{len(ev):,} store rows incl. BBO, ticks mmlab/hbt "
                  f"{r['ticks'][0]}/{r['ticks'][1]}]")
            print(f"  fills         mmlab {nm:8d}   hftbacktest {nh:8d} (order states; num_trades {r['num_trades_hbt']})"
                  f"   rel diff {_rel(nm, nh):.2e}")
            print(f"  matched by (ts_exch, price, side, qty): {r['matched']} = {r['matched'] / max(nm, nh, 1):.4%} "
                  f"of max(fill counts)")
            print(f"  equity at end mmlab {em:14.8f}   hftbacktest {eh:14.8f}   abs diff {abs(em - eh):.2e}   "
                  f"rel diff {_rel(em, eh):.2e}")
            print(f"  fees          mmlab {fm:14.8f}   hftbacktest {fh:14.8f}   abs diff {abs(fm - fh):.2e}   "
                  f"rel diff {_rel(fm, fh):.2e}")
            print(f"  position end  mmlab {r['position'][0]:.6f}   hftbacktest {r['position'][1]:.6f}")
            if case == "a":
                good = (nm == nh == r["matched"] and r["ticks"][0] == r["ticks"][1]
                        and abs(em - eh) <= ATOL_MONEY and abs(fm - fh) <= ATOL_MONEY)
                verdict = "IDENTICAL" if good else "NOT IDENTICAL"
            else:
                good = _rel(nm, nh) <= TOL_B and _rel(em, eh) <= TOL_B and _rel(fm, fh) <= TOL_B
                verdict = f"within {TOL_B:.0%}" if good else f"DIFFERS by more than {TOL_B:.0%}"
            print(f"  -> {verdict}")
            ok &= good
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
