"""Metrics computed from a run directory's files (ARCHITECTURE.md section 5), shared by reports and comparisons.

A run directory holds ``summary.json``, ``manifest.json``, ``config.toml`` and the parquet frames ``fills``,
``orders``, ``state``, ``labels`` (and ``decisions`` where the strategy writes them). Frames and columns may be
absent (older runs, strategies without some outputs): every function here returns ``None`` or an empty frame
plus a note instead of raising, so a report degrades section by section. Missing or unreadable *required*
files (``summary.json``) raise :class:`mmlab.errors.DataError`.

Conventions: side +1 buy / -1 sell, prices in quote currency, times in ns since the epoch, markouts in bps
(positive = the fill earned), fees positive = paid, negative = rebate.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmlab.errors import DataError

#: Frames a run directory may hold (``<name>.parquet``).
RUN_FRAMES = ("fills", "orders", "state", "decisions", "labels")

#: Strategies whose ``state.reason`` is a plain strategy code, not the pipeline's packed stage reasons.
PLAIN_REASON_STRATEGIES = ("grid", "scripted")

_MARKOUT_RE = re.compile(r"^markout_bps_(\d+(?:p\d+)?)(ms|s)$")
_STAGE_COL_RE = re.compile(r"^(stage_[a-z0-9_]+?|tick_total)(_ns)?$")


# ------------------------------------------------------------------------------------------------ run files


@dataclass
class RunData:
    """The files of one run directory; frames are read on first use and cached.

    Attributes
    ----------
    path : the run directory.
    summary, manifest : parsed JSON (``manifest`` is empty when the file is absent).
    config : parsed ``config.toml`` (empty when absent); ``config_text`` its text.
    notes : what was absent or unreadable, for the report.
    """

    path: Path
    summary: dict
    manifest: dict
    config: dict
    config_text: str
    notes: list[str] = field(default_factory=list)
    _frames: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """Run id from the manifest, else the directory name."""
        return str(self.manifest.get("run_id") or self.path.name)

    def frame(self, name: str):
        """The polars frame ``<name>.parquet`` of the run, or ``None`` when the file is absent."""
        if name not in self._frames:
            import polars as pl

            p = self.path / f"{name}.parquet"
            if not p.exists():
                self._frames[name] = None
            else:
                try:
                    self._frames[name] = pl.read_parquet(p)
                except Exception as exc:  # polars/pyarrow raise several types for damaged files
                    raise DataError(f"cannot read {p}: {exc} (rewrite the run with `mmlab backtest --out {self.path}`)") from exc
        return self._frames[name]

    def symbols(self) -> dict[str, dict]:
        """symbol -> {tick_size, lot_size, contract_type, contract_size} from the manifest (may be empty)."""
        out = {}
        for s in self.manifest.get("symbols") or []:
            if isinstance(s, dict) and s.get("symbol"):
                out[str(s["symbol"])] = s
        return out

    def config_value(self, section: str, key: str, default: Any = None) -> Any:
        sec = self.config.get(section)
        return sec.get(key, default) if isinstance(sec, dict) else default


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{p} line {exc.lineno}: invalid JSON ({exc.msg}); rewrite the run or fix the file") from exc
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc}") from exc


def load_run(run_dir: str | Path) -> RunData:
    """Open a run directory written by ``mmlab.sim.engine.write_run``.

    Raises
    ------
    DataError
        The directory or its ``summary.json`` is missing, or a JSON/TOML file is malformed.

    >>> run = load_run("experiments/runs/demo")  # doctest: +SKIP
    >>> run.summary["pnl_net"], run.frame("fills").height  # doctest: +SKIP
    """
    p = Path(run_dir)
    if not p.is_dir():
        raise DataError(f"run directory {p} does not exist (write one with `mmlab backtest --config CFG --out {p}`)")
    sp = p / "summary.json"
    if not sp.exists():
        raise DataError(f"{p} is not a run directory: {sp.name} is missing (write one with `mmlab backtest --config CFG --out {p}`)")
    summary = _read_json(sp)
    if not isinstance(summary, dict):
        raise DataError(f"{sp} must hold a JSON object, got {type(summary).__name__}")
    notes = []
    mp = p / "manifest.json"
    manifest = _read_json(mp) if mp.exists() else {}
    if not mp.exists():
        notes.append("manifest.json is absent: symbols default to linear contracts of size 1")
    cp = p / "config.toml"
    config_text = cp.read_text() if cp.exists() else ""
    try:
        config = tomllib.loads(config_text) if config_text else {}
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{cp}: invalid TOML ({exc}); rewrite the run or fix the file") from exc
    if not cp.exists():
        notes.append("config.toml is absent: initial cash taken as 0")
    return RunData(path=p, summary=summary, manifest=manifest if isinstance(manifest, dict) else {}, config=config,
                   config_text=config_text, notes=notes)


def has_columns(df, *cols: str) -> bool:
    """``df`` is a non-None frame holding every column of ``cols``."""
    return df is not None and all(c in df.columns for c in cols)


# --------------------------------------------------------------------------------------------- summary keys


def numeric_summary(summary: dict, prefix: str = "") -> dict[str, float | None]:
    """Flatten the numeric values of ``summary`` (nested dicts as dotted keys); booleans and strings are left out,
    ``null`` and NaN values kept as ``None``.

    >>> numeric_summary({"pnl_net": 1.5, "per_symbol": {"X": {"fees": 0.1, "contract": "linear"}}, "wall_s": None})
    {'pnl_net': 1.5, 'per_symbol.X.fees': 0.1, 'wall_s': None}
    """
    out: dict[str, float | None] = {}
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(numeric_summary(v, prefix=f"{key}."))
        elif isinstance(v, (bool, str, list)):
            continue
        elif v is None:
            out[key] = None
        elif isinstance(v, (int, float)):
            out[key] = None if (isinstance(v, float) and not math.isfinite(v)) else v
    return out


# ----------------------------------------------------------------------------------------- pnl decomposition


@dataclass
class PnlDecomposition:
    """Run pnl split into spread capture, inventory pnl and fees (see :func:`pnl_decomposition`).

    ``series`` is a polars frame with one row per decision tick: ``ts_local``, ``pnl`` (equity - initial cash),
    ``spread_capture``, ``inventory_pnl``, ``fees``; ``totals`` the same quantities for the whole run
    (``pnl`` = ``summary.json`` ``pnl_net``); ``notes`` what was approximated.
    """

    series: Any
    totals: dict
    notes: list[str]


def fill_spread_capture(fills, symbols: dict[str, dict]) -> tuple[np.ndarray, list[str]]:
    """Per-fill spread capture in the pnl currency (quote for linear, base for inverse contracts).

    Linear: ``side * (mid_fill - price) * qty * contract_size``; inverse:
    ``side * qty * contract_size * (1 / price - 1 / mid_fill)``. A fill without a mid (one side of the book
    empty) captures 0.
    """
    notes = []
    n = fills.height
    side = fills["side"].to_numpy().astype(np.float64)
    price = fills["price"].to_numpy().astype(np.float64)
    qty = fills["qty"].to_numpy().astype(np.float64)
    mid = fills["mid_fill"].to_numpy().astype(np.float64)
    sym = fills["symbol"].to_numpy() if "symbol" in fills.columns else np.full(n, "")
    cs = np.ones(n)
    inverse = np.zeros(n, dtype=bool)
    for s in np.unique(sym) if n else []:
        info = symbols.get(str(s), {})
        sel = sym == s
        cs[sel] = float(info.get("contract_size") or 1.0)
        inverse[sel] = str(info.get("contract_type", "linear")).lower() == "inverse"
    no_mid = ~np.isfinite(mid)
    if no_mid.any():
        notes.append(f"{int(no_mid.sum())} fills had no mid at the fill (empty book side): spread capture 0 for them")
    mid = np.where(no_mid, price, mid)
    with np.errstate(divide="ignore", invalid="ignore"):
        lin = side * (mid - price) * qty * cs
        inv = side * qty * cs * (1.0 / price - 1.0 / mid)
    return np.where(inverse, inv, lin), notes


def pnl_decomposition(run: RunData) -> PnlDecomposition | None:
    """Split the run's pnl into spread capture, inventory pnl and fees/rebates.

    Definitions (side +1 buy / -1 sell, linear contracts; inverse ones use ``1/price`` in place of price, see
    :func:`fill_spread_capture`):

    - spread capture ``S = sum over fills of side * (mid_at_fill - price) * qty * contract_size``: the edge
      earned against the exchange mid at the moment of each fill;
    - fees ``F = sum over fills of fee`` (negative = rebates earned);
    - inventory pnl ``I = pnl - S + F``, with ``pnl = equity - initial_cash``; for linear contracts this equals
      ``sum over fills of side * qty * contract_size * (mark - mid_at_fill)``, the gain or loss of carrying the
      position at mid from each fill to the mark;

    so that ``pnl = S + I - F`` holds exactly, per decision tick and for the run.

    Per decision tick ``t`` the sums run over the fills *reported* by ``t`` (``ts_local <= t``) and pnl is the
    state frame's equity at ``t`` (marked at the local mid). The run totals use every fill and ``pnl_net`` of
    ``summary.json`` (marked at the exchange mid at the end of the run).

    Returns ``None`` when the fills frame lacks ``side``, ``price``, ``qty`` or ``mid_fill``.
    """
    import polars as pl

    fills = run.frame("fills")
    state = run.frame("state")
    notes: list[str] = []
    if not has_columns(fills, "side", "price", "qty", "mid_fill"):
        return None
    cap, n2 = fill_spread_capture(fills, run.symbols())
    notes += n2
    fee = fills["fee"].to_numpy().astype(np.float64) if "fee" in fills.columns else np.zeros(fills.height)
    if "fee" not in fills.columns:
        notes.append("fills have no fee column: fees taken as 0")
    init_cash = float(run.config_value("sim", "initial_cash", 0.0) or 0.0)

    series = pl.DataFrame({"ts_local": [], "pnl": [], "spread_capture": [], "inventory_pnl": [], "fees": []},
                          schema={"ts_local": pl.Int64, "pnl": pl.Float64, "spread_capture": pl.Float64,
                                  "inventory_pnl": pl.Float64, "fees": pl.Float64})
    if has_columns(state, "ts_local") and ("equity" in state.columns or "pnl" in state.columns) and state.height:
        ts_u, pnl_t = tick_pnl(state, init_cash)
        if "ts_local" in fills.columns and fills.height:
            f_ts = fills["ts_local"].to_numpy()
            order = np.argsort(f_ts, kind="stable")
            f_ts = f_ts[order]
            cum_cap = np.r_[0.0, np.cumsum(cap[order])]
            cum_fee = np.r_[0.0, np.cumsum(fee[order])]
            k = np.searchsorted(f_ts, ts_u, side="right")
            cap_t, fee_t = cum_cap[k], cum_fee[k]
        else:
            cap_t = fee_t = np.zeros(len(ts_u))
        series = pl.DataFrame({"ts_local": ts_u, "pnl": pnl_t, "spread_capture": cap_t,
                               "inventory_pnl": pnl_t - cap_t + fee_t, "fees": fee_t})
    else:
        notes.append("state frame absent or without equity: no pnl time series")

    s_total = float(cap.sum())
    f_total = float(fee.sum())
    pnl = run.summary.get("pnl_net")
    if not isinstance(pnl, (int, float)) or not math.isfinite(pnl):
        pnl = float(series["pnl"][-1]) if series.height else float("nan")
        notes.append("summary.json has no finite pnl_net: run pnl taken from the last decision tick's equity")
    totals = {"pnl": float(pnl), "spread_capture": s_total, "inventory_pnl": float(pnl) - s_total + f_total,
              "fees": f_total}
    return PnlDecomposition(series=series, totals=totals, notes=notes)


def tick_pnl(state, initial_cash: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(decision tick times, run pnl at each) from the state frame: ``equity - initial_cash`` (every symbol row
    of a tick holds the run equity), else the sum of the symbols' ``pnl``."""
    ts = state["ts_local"].to_numpy()
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    ts_u, first = np.unique(ts, return_index=True)
    if "equity" in state.columns:
        eq = state["equity"].to_numpy().astype(np.float64)[order]
        return ts_u, eq[first] - initial_cash
    pnl = np.nan_to_num(state["pnl"].to_numpy().astype(np.float64)[order])
    inv = np.searchsorted(ts_u, ts)
    tot = np.zeros(len(ts_u))
    np.add.at(tot, inv, pnl)
    return ts_u, tot


# ------------------------------------------------------------------------------------------------ markouts


def parse_horizon_ms(suffix: str) -> float | None:
    """'100ms' -> 100.0, '1s' -> 1000.0, '1p5ms' -> 1.5; None if not a horizon suffix."""
    m = re.fullmatch(r"(\d+(?:p\d+)?)(ms|s)", suffix)
    if not m:
        return None
    v = float(m.group(1).replace("p", "."))
    return v * 1000.0 if m.group(2) == "s" else v


def markout_columns(df) -> list[tuple[float, str]]:
    """[(horizon_ms, column)] of the ``markout_bps_<H>`` columns of ``df``, by horizon."""
    if df is None:
        return []
    out = []
    for c in df.columns:
        m = _MARKOUT_RE.match(c)
        if m:
            out.append((parse_horizon_ms(m.group(1) + m.group(2)), c))
    return sorted(out)


def markout_curves(fills):
    """Mean markout by horizon and side: polars frame ``horizon_ms, column, side ('buy'/'sell'/'all'), mean_bps,
    n`` (NaN markouts, e.g. horizons past the end of the data, are left out of the means)."""
    import polars as pl

    rows = []
    cols = markout_columns(fills)
    if not cols or not has_columns(fills, "side"):
        return pl.DataFrame(schema={"horizon_ms": pl.Float64, "column": pl.Utf8, "side": pl.Utf8,
                                    "mean_bps": pl.Float64, "n": pl.Int64})
    side = fills["side"].to_numpy()
    for h, c in cols:
        x = fills[c].to_numpy().astype(np.float64)
        for name, sel in (("buy", side > 0), ("sell", side < 0), ("all", np.ones(len(x), dtype=bool))):
            v = x[sel]
            v = v[np.isfinite(v)]
            rows.append({"horizon_ms": h, "column": c, "side": name,
                         "mean_bps": float(v.mean()) if len(v) else float("nan"), "n": len(v)})
    return pl.DataFrame(rows)


# ------------------------------------------------------------------------------------ orders and queue

def fill_rate_by_distance(run: RunData, max_buckets: int = 40):
    """Share of sent orders that filled (any quantity), by distance from the mid at send in ticks.

    Distance = ``side * (mid - price) / tick_size`` (positive = behind the mid, 0.5 = at the touch of a one-tick
    spread), rounded to half ticks; distances outside the 1st-99th percentile range are clipped into the end
    buckets so that at most about ``max_buckets`` bars remain. Source: ``labels.parquet`` (``distance_ticks``,
    ``filled_qty``), else the ``sent``/``filled`` events of ``orders.parquet``.

    Returns (polars frame ``distance_ticks, n_orders, n_filled, fill_rate``, source note) or ``None``.
    """
    import polars as pl

    labels = run.frame("labels")
    if has_columns(labels, "distance_ticks", "filled_qty") and labels.height:
        d = labels["distance_ticks"].to_numpy().astype(np.float64)
        filled = labels["filled_qty"].to_numpy() > 0
        source = "labels.parquet (distance from the decision-tick mid)"
    else:
        orders = run.frame("orders")
        if not has_columns(orders, "event", "side", "price", "mid") or not (
                "order_seq" in orders.columns or "order_id" in orders.columns):
            return None
        key = "order_seq" if "order_seq" in orders.columns else "order_id"
        sent = orders.filter(pl.col("event") == "sent")
        if sent.height == 0:
            return None
        filled_keys = set(orders.filter(pl.col("event") == "filled")[key].to_list())
        ticks = np.ones(sent.height)
        syms = run.symbols()
        if "symbol" in sent.columns:
            sym = sent["symbol"].to_numpy()
            for s in np.unique(sym):
                ticks[sym == s] = float(syms.get(str(s), {}).get("tick_size") or 1.0)
        d = sent["side"].to_numpy() * (sent["mid"].to_numpy() - sent["price"].to_numpy()) / ticks
        filled = np.array([k in filled_keys for k in sent[key].to_list()], dtype=bool)
        source = "orders.parquet (distance from the local mid at send)"
    ok = np.isfinite(d)
    d, filled = d[ok], filled[ok]
    if not len(d):
        return None
    b = np.round(d * 2.0) / 2.0
    lo, hi = np.percentile(b, [1, 99])
    lo, hi = np.floor(lo * 2) / 2, np.ceil(hi * 2) / 2
    if (hi - lo) * 2 + 1 > max_buckets:
        mid = np.median(b)
        lo, hi = np.floor(mid - max_buckets / 4), np.ceil(mid + max_buckets / 4)
    b = np.clip(b, lo, hi)
    df = pl.DataFrame({"distance_ticks": b, "filled": filled})
    out = (df.group_by("distance_ticks").agg(pl.len().alias("n_orders"), pl.col("filled").sum().alias("n_filled"))
           .sort("distance_ticks")
           .with_columns((pl.col("n_filled") / pl.col("n_orders")).alias("fill_rate")))
    return out.with_columns(pl.col("n_orders").cast(pl.Int64), pl.col("n_filled").cast(pl.Int64)), source


def queue_eta_ms(run: RunData) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(queue ETA of filled orders in ms, resting time of censored orders in ms, source) or ``None``.

    From ``labels.parquet`` (``queue_eta_ms``: acceptance -> first fill; ``censored`` rows never filled), else the
    ``time_in_queue_ns`` of maker fills (no censored part)."""
    labels = run.frame("labels")
    if has_columns(labels, "queue_eta_ms"):
        eta = labels["queue_eta_ms"].to_numpy().astype(np.float64)
        cens = labels["censored"].to_numpy().astype(bool) if "censored" in labels.columns else np.zeros(len(eta), bool)
        ok = np.isfinite(eta)
        return eta[ok & ~cens], eta[ok & cens], "labels.parquet queue_eta_ms"
    fills = run.frame("fills")
    if has_columns(fills, "time_in_queue_ns"):
        maker = fills["maker"].to_numpy().astype(bool) if "maker" in fills.columns else np.ones(fills.height, bool)
        t = fills["time_in_queue_ns"].to_numpy().astype(np.float64)[maker] / 1e6
        return t[np.isfinite(t)], np.zeros(0), "fills.parquet time_in_queue_ns of maker fills"
    return None


# ------------------------------------------------------------------------------------------- reasons


def guard_reason_counts(run: RunData) -> tuple[str, list[tuple[str, int]]] | None:
    """(title, [(reason name, decision ticks)]) of the guard reasons of the run, most frequent first.

    Source, first found: a ``guard_reason`` column of ``decisions.parquet`` or ``state.parquet``; the packed
    stage reasons of ``state.reason`` for pipeline strategies (guards = byte 2,
    ``mmlab.pipeline_config.unpack_reasons``); for strategies without a guards stage (``grid``, ``scripted``)
    the counts of their own ``state.reason`` codes.
    """
    from mmlab.types import GuardReason

    def names(values: np.ndarray, enum) -> list[tuple[str, int]]:
        u, c = np.unique(values, return_counts=True)
        known = {int(m): m.name for m in enum} if enum is not None else {}
        rows = [(known.get(int(v), f"code {int(v)}"), int(n)) for v, n in zip(u, c)]
        return sorted(rows, key=lambda r: (-r[1], r[0]))

    for fname in ("decisions", "state"):
        df = run.frame(fname)
        if has_columns(df, "guard_reason") and df.height:
            col = df["guard_reason"]
            if col.dtype.is_integer():
                return f"guard reasons ({fname}.parquet)", names(col.to_numpy(), GuardReason)
            u = col.cast(str).value_counts(sort=True)
            return f"guard reasons ({fname}.parquet)", [(str(a), int(b)) for a, b in u.iter_rows()]
    state = run.frame("state")
    if not has_columns(state, "reason") or state.height == 0:
        return None
    codes = state["reason"].to_numpy().astype(np.int64)
    strategy = str(run.config_value("strategy", "name", "") or "")
    if strategy in PLAIN_REASON_STRATEGIES:
        return (f"strategy reason codes of '{strategy}' (no guards stage)", names(codes, None))
    from mmlab.pipeline_config import unpack_reasons

    u = np.unique(codes)
    guard = {int(c): int(unpack_reasons(int(c))["guards"]) for c in u}
    g = np.array([guard[int(c)] for c in codes], dtype=np.int64)
    return "guard reasons (state.parquet, packed pipeline reasons)", names(g, GuardReason)


# ---------------------------------------------------------------------------------------- stage timings


def stage_timing_columns(df) -> list[tuple[str, str]]:
    """[(stage name, column)] of per-tick stage timing columns (``stage_<name>[_ns]``, ``tick_total[_ns]``, ns)."""
    if df is None:
        return []
    out = []
    for c in df.columns:
        m = _STAGE_COL_RE.match(c)
        if m and df[c].dtype.is_numeric():
            out.append((m.group(1), c))
    return out


def stage_latency_summary(summary: dict) -> dict[str, dict] | None:
    """``summary.json`` ``stage_latency_ns`` ({stage: {p50, p95, p99}}) or ``None``."""
    v = summary.get("stage_latency_ns")
    return v if isinstance(v, dict) and v else None


# --------------------------------------------------------------------------------------------- windows


def busiest_window(event_ts: np.ndarray, t0: int, t1: int, window_ns: int) -> tuple[int, int]:
    """[lo, hi) of length ``window_ns`` inside [t0, t1] holding the most of ``event_ts`` (the first window
    when there are none; the whole span when it is shorter than the window)."""
    if t1 - t0 <= window_ns:
        return t0, t1
    ts = np.sort(event_ts[(event_ts >= t0) & (event_ts <= t1)])
    if not len(ts):
        return t0, t0 + window_ns
    counts = np.searchsorted(ts, ts + window_ns, side="left") - np.arange(len(ts))
    i = int(np.argmax(counts))
    lo = min(int(ts[i]), t1 - window_ns)
    return lo, lo + window_ns
