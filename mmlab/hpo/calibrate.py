"""Fill-model calibration: empirical fill curves and the queue model of highest likelihood, as a ``[sim]`` preset.

Observations are the accepted orders of a backtest run directory (``labels.parquet``: distance from the touch,
queue ahead at acceptance, acceptance / first fill / end times) and, when given, of a live session
(``fills.jsonl`` with ``orders.jsonl`` beside it, as ``mmlab live`` writes them; these have no mid, so their
distance and queue bins are "unknown"). For each horizon h of ``horizons_ms`` an order is an observation
``y = 1`` when its first fill came within h of acceptance, ``y = 0`` when it lived at least h (or to the end of
the data) without one; orders canceled unfilled before h carry no information about h and are left out.

Each candidate model (``risk_averse``, ``log_prob``, ``log_prob2``, and the three power models with every
``queue_power``) replays
the same data with the same config; its orders give per-bin fill probabilities ``p_b = (k_b + 0.5) / (n_b + 1)``
(bins: distance from the touch in ticks x queue-ahead quartiles of the observations, per horizon; an empty bin
takes the candidate's overall rate). The log-likelihood of the observations is ``sum y log p_b + (1 - y)
log(1 - p_b)`` over orders and horizons, and the best candidate is written as a preset TOML::

    [sim]
    queue_model = "power_prob"
    queue_power = 3.0

>>> touch_bin(np.array([-1.0, 0.0, 1.0, 2.0, 3.5, 9.0, np.nan])).tolist()
[0, 0, 1, 2, 3, 4, 5]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np

from mmlab.errors import ConfigError, DataError

PROB_MODELS = ("power_prob", "power_prob2", "power_prob3", "log_prob", "log_prob2")
ALL_MODELS = ("risk_averse",) + PROB_MODELS
#: Models whose probability function uses queue_power (n); log_prob/log_prob2 and risk_averse do not.
POWER_MODELS = ("power_prob", "power_prob2", "power_prob3")
#: Distance-from-touch bins (ticks): <= 0 (at or through the touch), 1, 2, 3-4, >= 5; 5 = unknown.
TOUCH_EDGES = (0.5, 1.5, 2.5, 4.5)
N_TOUCH_BINS = len(TOUCH_EDGES) + 2
N_QUEUE_BINS = 4  # quartiles of the observed queue ahead; + 1 unknown
NS_PER_MS = 1_000_000


def touch_bin(touch_ticks: np.ndarray) -> np.ndarray:
    """Bin index of each distance from the touch (NaN -> the unknown bin)."""
    t = np.asarray(touch_ticks, dtype=float)
    b = np.searchsorted(np.array(TOUCH_EDGES), np.nan_to_num(t, nan=0.0), side="right")
    return np.where(np.isnan(t), N_TOUCH_BINS - 1, b).astype(np.int64)


def queue_bin(queue_qty: np.ndarray, edges: np.ndarray) -> np.ndarray:
    q = np.asarray(queue_qty, dtype=float)
    b = np.searchsorted(edges, np.nan_to_num(q, nan=0.0), side="right")
    return np.where(np.isnan(q), N_QUEUE_BINS, b).astype(np.int64)


def orders_from_labels(labels) -> dict[str, np.ndarray]:
    """Accepted orders of a run's labels frame: touch distance (ticks), queue ahead, accept/first fill/end (ns)."""
    lab = labels.filter(labels["accepted"])
    dist = lab["distance_ticks"].to_numpy().astype(float)
    spread = lab["spread_ticks"].to_numpy().astype(float)
    return {"touch_ticks": dist - spread / 2.0, "queue_ahead_qty": lab["queue_ahead_qty"].to_numpy().astype(float),
            "accept_ts": lab["accept_ts"].to_numpy().astype(np.int64),
            "first_fill_ts": lab["first_fill_ts"].to_numpy().astype(np.int64),
            "end_ts": lab["end_ts"].to_numpy().astype(np.int64)}


def _order_key(row: dict) -> tuple:
    # order_seq is unique per order; order ids may be reused by strategies that key orders by price.
    return (row["symbol"], int(row["order_seq"])) if "order_seq" in row else (row["symbol"], int(row["order_id"]))


def orders_from_live(fills_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Accepted orders of a live session from ``orders.jsonl`` beside ``fills.jsonl`` (fills.jsonl alone lists
    only filled orders, so it cannot give fill probabilities)."""
    fills_path = Path(fills_path)
    orders_path = fills_path.parent / "orders.jsonl"
    if not fills_path.exists():
        raise DataError(f"live fills file {fills_path} does not exist")
    if not orders_path.exists():
        raise DataError(f"{orders_path} is missing: fill probabilities need every order, not only the filled ones "
                        "(mmlab live writes orders.jsonl beside fills.jsonl)")
    acc, first, end, queue = {}, {}, {}, {}
    for n, line in enumerate(orders_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            key, ev, ts = _order_key(r), r["event"], int(r["ts_exch"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{orders_path} line {n} is not an order event row ({exc}); expected keys symbol, "
                            "order_id, event, ts_exch") from exc
        if ev == "accepted":
            acc.setdefault(key, ts)
        elif ev == "filled":
            first.setdefault(key, ts)
        elif ev in ("canceled", "rejected", "expired"):
            end.setdefault(key, ts)
    for n, line in enumerate(fills_path.read_text().splitlines(), 1):
        if line.strip():
            try:
                r = json.loads(line)
                q = r.get("queue_ahead_qty")
                queue.setdefault(_order_key(r), float(q) if q is not None else math.nan)
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{fills_path} line {n} is not a fill row ({exc})") from exc
    keys = sorted(acc)
    return {"touch_ticks": np.full(len(keys), np.nan),
            # Queue ahead is known for filled orders only: bin all live orders as unknown to avoid that bias.
            "queue_ahead_qty": np.full(len(keys), np.nan),
            "accept_ts": np.array([acc[k] for k in keys], dtype=np.int64),
            "first_fill_ts": np.array([first.get(k, -1) for k in keys], dtype=np.int64),
            "end_ts": np.array([end.get(k, -1) for k in keys], dtype=np.int64)}


def outcomes(orders: dict, horizon_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, y)``: orders informative about horizon ``horizon_ns`` and whether each filled within it."""
    a, f, e = orders["accept_ts"], orders["first_fill_ts"], orders["end_ts"]
    filled_in = (f >= 0) & (f - a <= horizon_ns)
    lived = (f >= 0) | (e < 0) | (e - a >= horizon_ns)
    mask = (a >= 0) & (filled_in | lived)
    return mask, filled_in[mask]


def _bins(orders: dict, edges: np.ndarray) -> np.ndarray:
    return touch_bin(orders["touch_ticks"]) * (N_QUEUE_BINS + 1) + queue_bin(orders["queue_ahead_qty"], edges)


def loglik(observed: dict, candidate: dict, horizons_ns, edges: np.ndarray) -> float:
    """Log-likelihood of the observed orders' fill outcomes under a candidate's per-bin fill rates."""
    nb = N_TOUCH_BINS * (N_QUEUE_BINS + 1)
    ob, cb = _bins(observed, edges), _bins(candidate, edges)
    total = 0.0
    for h in horizons_ns:
        mo, yo = outcomes(observed, h)
        mc, yc = outcomes(candidate, h)
        n = np.bincount(cb[mc], minlength=nb).astype(float)
        k = np.bincount(cb[mc], weights=yc.astype(float), minlength=nb)
        overall = (k.sum() + 0.5) / (n.sum() + 1.0)
        p = np.where(n > 0, (k + 0.5) / (n + 1.0), overall)
        po = p[ob[mo]]
        total += float(np.sum(np.where(yo, np.log(po), np.log1p(-po))))
    return total


def fill_curves(orders: dict, edges: np.ndarray, horizon_ns: int, time_grid_ms) -> dict:
    """Empirical fill probability within ``horizon_ns`` by touch distance and queue bin, and the fraction of
    accepted orders filled within each time of ``time_grid_ms`` (orders that ended earlier unfilled excluded)."""
    mask, y = outcomes(orders, horizon_ns)
    tb, qb = touch_bin(orders["touch_ticks"])[mask], queue_bin(orders["queue_ahead_qty"], edges)[mask]
    by_touch = [{"bin": lab, "n": int((tb == i).sum()), "p_fill": float(y[tb == i].mean()) if (tb == i).any() else None}
                for i, lab in enumerate(("<=0", "1", "2", "3-4", ">=5", "unknown"))]
    qlabels = [f"<= {edges[0]:.4g}"] + [f"{edges[i]:.4g}-{edges[i + 1]:.4g}" for i in range(len(edges) - 1)] + \
        [f"> {edges[-1]:.4g}", "unknown"]
    by_queue = [{"bin": qlabels[i], "n": int((qb == i).sum()),
                 "p_fill": float(y[qb == i].mean()) if (qb == i).any() else None} for i in range(N_QUEUE_BINS + 1)]
    by_time = []
    for t in time_grid_ms:
        m, yt = outcomes(orders, int(t * NS_PER_MS))
        by_time.append({"t_ms": float(t), "n": int(m.sum()), "p_fill": float(yt.mean()) if m.any() else None})
    return {"by_touch_ticks": by_touch, "by_queue_ahead": by_queue, "by_time": by_time}


def _concat(parts: list[dict]) -> dict:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def candidates(models, powers) -> list[tuple[str, float]]:
    out = []
    for m in models:
        if m not in ALL_MODELS:
            raise ConfigError(f"--models: unknown queue model {m!r}; choose from {ALL_MODELS}")
        if m not in POWER_MODELS:
            out.append((m, 2.0))  # queue_power unused by this model: one candidate
        else:
            out += [(m, float(p)) for p in powers]
    if not out:
        raise ConfigError("no candidate queue model to try (check --models and --powers)")
    bad = [p for m, p in out if p <= 0]
    if bad:
        raise ConfigError(f"--powers must be > 0, got {bad}")
    return out


def calibrate_fills(run_dir=None, *, live_fills=None, config=None, models=None, powers=(0.5, 1.0, 2.0, 3.0, 4.0),
                    horizon_ms: float = 1000.0, out=None, events=None, symbols=None) -> dict:
    """Fit the queue model to the observed orders (see the module doc); write ``calibration.json``,
    ``fill_curves.png`` and ``queue_preset.toml`` under ``out`` (default ``<run_dir>/calibration``)."""
    import polars as pl

    from mmlab.config import load_config
    from mmlab.sim.engine import run_backtest

    if run_dir is None and live_fills is None:
        raise ConfigError("calibrate-fills needs a run directory and/or --live-fills")
    if horizon_ms <= 0:
        raise ConfigError(f"--horizon-ms must be > 0, got {horizon_ms}")
    parts = []
    if run_dir is not None:
        lp = Path(run_dir) / "labels.parquet"
        if not lp.exists():
            raise DataError(f"{lp} is missing: pass a run directory written by `mmlab backtest --out DIR`")
        parts.append(orders_from_labels(pl.read_parquet(lp)))
    if live_fills is not None:
        parts.append(orders_from_live(live_fills))
    observed = _concat(parts)
    if config is None:
        if run_dir is None:
            raise ConfigError("--live-fills needs --config: the backtest config of the recorded data to re-simulate")
        config = Path(run_dir) / "config.toml"
    cfg = config if hasattr(config, "data") else load_config(config)
    horizons_ns = [int(h * NS_PER_MS) for h in (horizon_ms / 10.0, horizon_ms, horizon_ms * 5.0)]
    q = observed["queue_ahead_qty"]
    q = q[np.isfinite(q)]
    edges = np.unique(np.quantile(q, [0.25, 0.5, 0.75])) if len(q) else np.array([0.0])
    edges = np.concatenate([edges, np.full(N_QUEUE_BINS - 1 - len(edges), edges[-1])]) if len(edges) < N_QUEUE_BINS - 1 else edges
    if not (observed["accept_ts"] >= 0).any():
        raise DataError("no accepted order among the observations: nothing to calibrate")
    if events is None:
        from mmlab.data import bridge
        from mmlab.sim.engine import SymbolSpec

        d = cfg.data
        events, infos = bridge.load_events(d.root, d.venue, list(d.symbols), d.start, d.end)
        symbols = [SymbolSpec(i.symbol, i.tick_size, i.lot_size, i.contract_type, i.contract_size, i.meta) for i in infos]
    rows, cand_orders = [], {}
    for model, power in candidates(models or ALL_MODELS, powers):
        c = cfg.replace(sim=dataclasses.replace(cfg.sim, queue_model=model, queue_power=power))
        r = run_backtest(c, events=events, symbols=symbols)
        co = orders_from_labels(r.labels)
        ll = loglik(observed, co, horizons_ns, edges)
        rows.append({"queue_model": model, "queue_power": power, "loglik": ll, "n_fills": r.summary["n_fills"],
                     "fill_rate": r.summary["fill_rate"]})
        cand_orders[(model, power)] = co
    rows.sort(key=lambda r: -r["loglik"])
    best = rows[0]
    n_obs = int(sum(outcomes(observed, h)[0].sum() for h in horizons_ns))
    for r in rows:
        r["loglik_per_obs"] = r["loglik"] / n_obs if n_obs else None
        r["delta_vs_best"] = r["loglik"] - best["loglik"]
    out_dir = Path(out) if out is not None else (Path(run_dir) / "calibration" if run_dir else Path("reports/calibration"))
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = [horizon_ms * f for f in (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)]
    curves = {"observed": fill_curves(observed, edges, horizons_ns[1], grid),
              "best": fill_curves(cand_orders[(best["queue_model"], best["queue_power"])], edges, horizons_ns[1], grid)}
    preset = out_dir / "queue_preset.toml"
    preset.write_text(
        f"# Queue model of highest likelihood for the fills of {run_dir or ''} {live_fills or ''}\n"
        f"# (mmlab calibrate-fills; log-likelihood {best['loglik']:.4f} over {n_obs} observations, horizons "
        f"{[h / NS_PER_MS for h in horizons_ns]} ms). Use: mmlab backtest --config X.toml --set "
        f"sim.queue_model='\"{best['queue_model']}\"' --set sim.queue_power={best['queue_power']:g}\n"
        f"[sim]\nqueue_model = \"{best['queue_model']}\"\nqueue_power = {best['queue_power']!r}\n")
    load_config(str(preset))  # the preset is a valid config fragment
    res = {"observations": {"orders": len(observed["accept_ts"]), "n_obs": n_obs,
                            "sources": [str(s) for s in (run_dir, live_fills) if s is not None]},
           "horizons_ms": [h / NS_PER_MS for h in horizons_ns], "queue_edges_qty": edges.tolist(),
           "candidates": rows, "best": best, "preset": str(preset), "curves": curves}
    res["png"] = str(_plot(curves, out_dir / "fill_curves.png", best))
    (out_dir / "calibration.json").write_text(json.dumps(res, indent=2, default=float))
    return res


def _plot(curves: dict, path: Path, best: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, xlab in ((axes[0], "by_touch_ticks", "distance from touch, ticks"),
                          (axes[1], "by_queue_ahead", "queue ahead at acceptance, qty")):
        for name, style in (("observed", "o-"), ("best", "s--")):
            rows = curves[name][key]
            ax.plot([r["bin"] for r in rows], [r["p_fill"] if r["p_fill"] is not None else np.nan for r in rows],
                    style, label=name if name == "observed" else f"{best['queue_model']} n={best['queue_power']:g}")
        ax.set_xlabel(xlab)
        ax.set_ylabel("fill probability")
        ax.tick_params(axis="x", labelrotation=20)
        ax.legend(fontsize=8)
    for name, style in (("observed", "o-"), ("best", "s--")):
        rows = curves[name]["by_time"]
        axes[2].plot([r["t_ms"] for r in rows], [r["p_fill"] if r["p_fill"] is not None else np.nan for r in rows],
                     style, label=name)
    axes[2].set_xscale("log")
    axes[2].set_xlabel("time since acceptance, ms")
    axes[2].set_ylabel("P(filled within t)")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
