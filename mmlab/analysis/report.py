"""Backtest report of one run directory: PNG charts plus one self-contained ``report.html``.

>>> from mmlab.analysis.report import build_report
>>> build_report("experiments/runs/demo")  # doctest: +SKIP
PosixPath('experiments/runs/demo/report.html')

Charts (each skipped, with a note in the report, when the columns it needs are absent): equity with the pnl
decomposition (:func:`mmlab.analysis.metrics.pnl_decomposition`), inventory, quotes vs mid with fills (the
busiest window when the run is long), markout curves by side, queue-ETA histogram, fill rate by distance from
the mid, guard-reason counts, per-stage latency histograms ("not recorded" when the run timed no stage). A run
merged from parts (``mmlab backtest --jobs N``) also gets per-day and per-part tables.

Files are a pure function of the run directory and the matplotlib version: figures are drawn on
``matplotlib.figure.Figure`` objects (Agg, no display, no pyplot state), PNGs carry no software/date metadata,
and the HTML holds no generation time.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmlab.analysis import metrics as M

#: Length of the quotes-vs-mid window (the busiest one by fills when the run is longer).
QUOTES_WINDOW_MIN = 10.0
#: Length of the zoomed quotes-vs-mid window (the busiest one inside the first).
QUOTES_ZOOM_S = 10.0
#: Symbols drawn in per-symbol charts (the first ones of the run).
MAX_SYMBOL_PANELS = 3
DPI = 100
NS_PER_S = 1_000_000_000

#: rcParams fixed for every figure so that PNG bytes do not depend on the user's matplotlibrc.
RC = {
    "svg.hashsalt": "mmlab",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
}

SIDE_COLORS = {"buy": "#2ca02c", "sell": "#d62728", "all": "#555555"}


# ------------------------------------------------------------------------------------------- figure helpers


def new_figure(width_in: float = 10.0, height_in: float = 4.0):
    """A standalone Agg-backed figure (no pyplot, no display)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def png_bytes(fig) -> bytes:
    """PNG of ``fig`` without metadata (no software version, no date): same inputs, same bytes."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def draw(fn: Callable, *args, **kwargs):
    """Call ``fn`` under the fixed rcParams (styles are read when artists are created)."""
    import matplotlib

    with matplotlib.rc_context(RC):
        return fn(*args, **kwargs)


def _minutes(ts_ns: np.ndarray, t0: int) -> np.ndarray:
    return (np.asarray(ts_ns, dtype=np.int64) - t0) / (60.0 * NS_PER_S)


def _utc(ts_ns: int) -> str:
    return str(np.datetime64(int(ts_ns), "ns").astype("datetime64[ms]")) + "Z"


def run_t0(run: M.RunData) -> int | None:
    """First decision tick (else first fill) of the run, ns; the origin of every time axis."""
    for name, col in (("state", "ts_local"), ("fills", "ts_local"), ("orders", "ts_local")):
        df = run.frame(name)
        if M.has_columns(df, col) and df.height:
            return int(df[col].min())
    return None


# ----------------------------------------------------------------------------------------------- charts


@dataclass
class Chart:
    """One report section: a PNG (or a note why there is none) and optional HTML tables."""

    key: str
    title: str
    png: bytes | None = None
    caption: str = ""
    note: str | None = None
    tables_html: list[str] = field(default_factory=list)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.6g}"
    if isinstance(v, int):
        return f"{v:,}".replace(",", "_") if abs(v) >= 100_000 else str(v)
    return str(v)


def html_table(rows: list[dict], columns: list[str], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def chart_equity(run: M.RunData, t0: int | None) -> Chart:
    c = Chart("equity", "Equity and pnl decomposition")
    dec = M.pnl_decomposition(run)
    if dec is None:
        c.note = "fills.parquet lacks side/price/qty/mid_fill: no pnl decomposition"
        return c
    rows = [{"component": k, "value": v} for k, v in dec.totals.items()]
    c.tables_html.append(html_table(rows, ["component", "value"]))
    c.caption = ("pnl = spread capture + inventory pnl - fees. Spread capture = sum over fills of "
                 "side * (mid_at_fill - price) * qty; fees negative = rebates; inventory pnl = pnl - spread capture "
                 "+ fees (the position carried at mid from each fill to the mark). Curves: fills reported by each "
                 "decision tick, marked at the local mid; the table: the whole run, pnl_net of summary.json.")
    if dec.notes:
        c.caption += " Notes: " + "; ".join(dec.notes) + "."
    s = dec.series
    if s.height == 0 or t0 is None:
        c.note = "no decision ticks with equity: table only"
        return c

    def plot():
        fig = new_figure(10, 4.5)
        ax = fig.add_subplot(1, 1, 1)
        x = _minutes(s["ts_local"].to_numpy(), t0)
        ax.plot(x, s["pnl"].to_numpy(), color="black", lw=1.4, label=f"pnl (end {dec.totals['pnl']:.4g})")
        ax.plot(x, s["spread_capture"].to_numpy(), color="#1f77b4", lw=1.0,
                label=f"spread capture ({dec.totals['spread_capture']:.4g})")
        ax.plot(x, s["inventory_pnl"].to_numpy(), color="#ff7f0e", lw=1.0,
                label=f"inventory pnl ({dec.totals['inventory_pnl']:.4g})")
        ax.plot(x, -s["fees"].to_numpy(), color="#9467bd", lw=1.0,
                label=f"-fees, + = rebates ({-dec.totals['fees']:.4g})")
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.set_xlabel(f"minutes since {_utc(t0)}")
        ax.set_ylabel("pnl (quote currency)")
        ax.set_title(f"equity and pnl decomposition - {run.name}")
        ax.legend(loc="best")
        return fig

    c.png = png_bytes(draw(plot))
    return c


def chart_inventory(run: M.RunData, t0: int | None) -> Chart:
    c = Chart("inventory", "Inventory (position)")
    state = run.frame("state")
    if not M.has_columns(state, "ts_local", "position") or state.height == 0 or t0 is None:
        c.note = "state.parquet lacks ts_local/position: no inventory chart"
        return c
    syms = _symbols_of(state)

    def plot():
        fig = new_figure(10, 3.5)
        ax = fig.add_subplot(1, 1, 1)
        for sym in syms:
            df = state if sym is None else state.filter(state["symbol"] == sym)
            ax.step(_minutes(df["ts_local"].to_numpy(), t0), df["position"].to_numpy(), where="post", lw=1.0,
                    label=sym or "position")
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.set_xlabel(f"minutes since {_utc(t0)}")
        ax.set_ylabel("position (base units / contracts)")
        ax.set_title("inventory at each decision tick (fills reported so far)")
        if len(syms) > 1:
            ax.legend(loc="best")
        return fig

    c.png = png_bytes(draw(plot))
    return c


def _symbols_of(df) -> list:
    if "symbol" not in df.columns:
        return [None]
    return sorted(set(df["symbol"].to_list()))


def chart_quotes(run: M.RunData, t0: int | None, window_min: float = QUOTES_WINDOW_MIN,
                 zoom_s: float = QUOTES_ZOOM_S) -> Chart:
    c = Chart("quotes", "Quotes vs mid with fills")
    state = run.frame("state")
    if not M.has_columns(state, "ts_local", "mid") or state.height == 0 or t0 is None:
        c.note = "state.parquet lacks ts_local/mid: no quotes chart"
        return c
    fills = run.frame("fills")
    has_fills = M.has_columns(fills, "price", "side") and ("ts_exch" in fills.columns or "ts_local" in fills.columns) \
        and fills.height > 0
    fcol = ("ts_exch" if "ts_exch" in fills.columns else "ts_local") if has_fills else None
    ts = state["ts_local"].to_numpy()
    t_lo, t_hi = int(ts.min()), int(ts.max())
    f_ts = fills[fcol].to_numpy() if has_fills else np.zeros(0, np.int64)
    w0, w1 = M.busiest_window(f_ts, t_lo, t_hi, int(window_min * 60 * NS_PER_S))
    z0, z1 = M.busiest_window(f_ts, w0, w1, int(zoom_s * NS_PER_S))
    syms = _symbols_of(state)
    shown = syms[:MAX_SYMBOL_PANELS]
    missing = [q for q in ("quote_bid", "quote_ask", "best_bid", "best_ask") if q not in state.columns]
    long_run = (t_hi - t_lo) > window_min * 60 * NS_PER_S
    c.caption = (f"left: {_utc(w0)} to {_utc(w1)}" + (" (the busiest window by fills)" if long_run else " (whole run)")
                 + f"; right: zoom on the busiest {zoom_s:g} s, {_utc(z0)} to {_utc(z1)}"
                 + "; lines: touch (thin), mid, best desired quote per side at each decision tick; markers: fills at "
                 + "exchange time" + ("" if has_fills else "; no fills")
                 + (f"; columns absent: {', '.join(missing)}" if missing else "")
                 + (f"; symbols not drawn: {', '.join(map(str, syms[MAX_SYMBOL_PANELS:]))}" if len(syms) > len(shown) else ""))
    lines = (("best_bid", "#9ecae1", 0.7, "best bid"), ("best_ask", "#fcbba1", 0.7, "best ask"), ("mid", "black", 0.9, "mid"),
             ("quote_bid", SIDE_COLORS["buy"], 1.0, "quote bid"), ("quote_ask", SIDE_COLORS["sell"], 1.0, "quote ask"))

    def panel(ax, df, fd, lo, hi):
        t = df["ts_local"].to_numpy()
        sel = (t >= lo) & (t <= hi)
        x = _minutes(t[sel], t0)
        for col, color, lw, label in lines:
            if col in df.columns:
                ax.step(x, df[col].to_numpy()[sel], where="post", color=color, lw=lw, label=label)
        if fd is not None:
            ft = fd[fcol].to_numpy()
            fs = (ft >= lo) & (ft <= hi)
            side = fd["side"].to_numpy()[fs]
            fx = _minutes(ft[fs], t0)
            fp = fd["price"].to_numpy()[fs]
            ax.scatter(fx[side > 0], fp[side > 0], marker="^", s=20, color=SIDE_COLORS["buy"], zorder=3, label="buy fill")
            ax.scatter(fx[side < 0], fp[side < 0], marker="v", s=20, color=SIDE_COLORS["sell"], zorder=3, label="sell fill")
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")

    def plot():
        fig = new_figure(12, 0.6 + 3.0 * len(shown))
        axes = fig.subplots(len(shown), 2, squeeze=False, width_ratios=[2, 1])
        for i, sym in enumerate(shown):
            df = state if sym is None else state.filter(state["symbol"] == sym)
            fd = None
            if has_fills:
                fd = fills if sym is None or "symbol" not in fills.columns else fills.filter(fills["symbol"] == sym)
            panel(axes[i, 0], df, fd, w0, w1)
            panel(axes[i, 1], df, fd, z0, z1)
            axes[i, 0].set_ylabel(f"price {sym or ''}".strip())
        axes[-1, 0].set_xlabel(f"minutes since {_utc(t0)}")
        axes[-1, 1].set_xlabel(f"minutes since {_utc(t0)} (zoom)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncol=len(labels))
        return fig

    c.png = png_bytes(draw(plot))
    return c


def plot_markouts(ax, curves, label_prefix: str = "", linestyle: str = "-") -> None:
    """Mean markout vs horizon (log x), one line per side, on ``ax``."""
    for side in ("buy", "sell", "all"):
        d = curves.filter(curves["side"] == side)
        if d.height == 0:
            continue
        ax.plot(d["horizon_ms"].to_numpy(), d["mean_bps"].to_numpy(), marker="o", ls=linestyle,
                color=SIDE_COLORS[side], lw=1.4 if side != "all" else 1.0, label=f"{label_prefix}{side}")
    ax.set_xscale("log")
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_xlabel("horizon after the fill (ms, log)")
    ax.set_ylabel("mean markout (bps, + = earned)")


def chart_markouts(run: M.RunData) -> Chart:
    c = Chart("markouts", "Markout curves by side")
    fills = run.frame("fills")
    curves = M.markout_curves(fills)
    if curves.height == 0:
        c.note = "fills.parquet has no markout_bps_<H> columns (or no side column): no markout chart"
        return c
    piv = {}
    for r in curves.iter_rows(named=True):
        piv.setdefault(r["column"], {"horizon": r["column"].removeprefix("markout_bps_")})[r["side"]] = r["mean_bps"]
        if r["side"] == "all":
            piv[r["column"]]["n"] = r["n"]
    c.tables_html.append(html_table(list(piv.values()), ["horizon", "buy", "sell", "all", "n"]))
    c.caption = "markout_bps_H = side * (mid(t_fill + H) - price) / price * 1e4, exchange mid; NaN markouts left out"

    def plot():
        fig = new_figure(7, 3.8)
        ax = fig.add_subplot(1, 1, 1)
        plot_markouts(ax, curves)
        ax.set_title(f"markouts by side - {run.name}")
        ax.legend(loc="best")
        return fig

    c.png = png_bytes(draw(plot))
    return c


def chart_queue_eta(run: M.RunData) -> Chart:
    c = Chart("queue_eta", "Queue ETA")
    q = M.queue_eta_ms(run)
    if q is None:
        c.note = "neither labels.parquet queue_eta_ms nor fills.parquet time_in_queue_ns: no queue-ETA chart"
        return c
    filled, censored, source = q
    if len(filled) == 0 and len(censored) == 0:
        c.note = f"no queue ETAs in {source}"
        return c
    c.caption = (f"source: {source}; filled: {len(filled)} orders (acceptance -> first fill), "
                 f"median {np.median(filled):.4g} ms" if len(filled) else f"source: {source}; no filled orders")
    if len(censored):
        c.caption += f"; never filled (censored, time resting): {len(censored)} orders"

    def plot():
        fig = new_figure(7, 3.8)
        ax = fig.add_subplot(1, 1, 1)
        allv = np.concatenate([filled, censored])
        pos = allv[allv > 0]
        lo = max(float(pos.min()) if len(pos) else 1e-3, 1e-3)
        hi = max(float(allv.max()), lo * 10)
        bins = np.geomspace(lo, hi, 41)
        if len(filled):
            ax.hist(np.clip(filled, lo, hi), bins=bins, color="#1f77b4", alpha=0.8, label="filled")
        if len(censored):
            ax.hist(np.clip(censored, lo, hi), bins=bins, histtype="step", color="#7f7f7f", lw=1.2, label="never filled (censored)")
        ax.set_xscale("log")
        ax.set_xlabel("time in queue (ms, log; zeros at the left edge)")
        ax.set_ylabel("orders")
        ax.set_title("queue ETA")
        ax.legend(loc="best")
        return fig

    c.png = png_bytes(draw(plot))
    return c


def chart_fill_rate(run: M.RunData) -> Chart:
    c = Chart("fill_rate", "Fill rate by distance from mid")
    res = M.fill_rate_by_distance(run)
    if res is None:
        c.note = "neither labels.parquet distance_ticks/filled_qty nor orders.parquet sent/filled events: no fill-rate chart"
        return c
    df, source = res
    c.caption = (f"share of sent orders with any fill, by side * (mid - price) in ticks at send (0.5 = touch of a "
                 f"one-tick spread; end buckets hold the clipped tails); source: {source}")
    c.tables_html.append(html_table(df.to_dicts(), ["distance_ticks", "n_orders", "n_filled", "fill_rate"]))

    def plot():
        fig = new_figure(8, 3.8)
        ax = fig.add_subplot(1, 1, 1)
        x = df["distance_ticks"].to_numpy()
        ax.bar(x, df["fill_rate"].to_numpy(), width=0.4, color="#1f77b4")
        for xi, r, n in zip(x, df["fill_rate"].to_numpy(), df["n_orders"].to_numpy()):
            ax.annotate(str(int(n)), (xi, r), ha="center", va="bottom", fontsize=7, color="#555555")
        if len(x) <= 24:
            ax.set_xticks(x)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("distance from mid at send (ticks; labels: orders)")
        ax.set_ylabel("fill rate")
        ax.set_title("fill rate by distance from mid")
        return fig

    c.png = png_bytes(draw(plot))
    return c


def chart_reasons(run: M.RunData) -> Chart:
    c = Chart("reasons", "Guard reasons")
    res = M.guard_reason_counts(run)
    if res is None:
        c.note = "no guard_reason column and no state.parquet reason column: no guard-reason chart"
        return c
    title, rows = res
    total = sum(n for _, n in rows) or 1
    c.caption = f"{title}; decision ticks per reason"
    c.tables_html.append(html_table([{"reason": r, "ticks": n, "share": n / total} for r, n in rows], ["reason", "ticks", "share"]))

    def plot():
        fig = new_figure(7, 0.8 + 0.35 * max(len(rows), 2))
        ax = fig.add_subplot(1, 1, 1)
        names = [r for r, _ in rows][::-1]
        ax.barh(names, [n for _, n in rows][::-1], color="#8c564b")
        ax.set_xlabel("decision ticks")
        ax.set_title(title)
        return fig

    c.png = png_bytes(draw(plot))
    return c


def chart_stage_latency(run: M.RunData) -> Chart:
    c = Chart("stage_latency", "Per-stage latency")
    summ = M.stage_latency_summary(run.summary)
    if summ:
        rows = [{"stage": k, **{p: v.get(p) for p in ("p50", "p95", "p99")}} for k, v in summ.items() if isinstance(v, dict)]
        c.tables_html.append(html_table(rows, ["stage", "p50", "p95", "p99"]))
    cols = []
    src = None
    for name in ("state", "decisions"):
        df = run.frame(name)
        # Timing columns exist on every decision row but hold values only on timed ticks.
        cols = [(stage, col) for stage, col in M.stage_timing_columns(df) if _has_positive(df[col])]
        if cols:
            src = name
            break
    if not cols:
        c.note = ("stage latency not recorded: no per-tick stage timings (stage_<name>_ns, tick_total_ns) in "
                  "state/decisions.parquet (set pipeline.sample_stage_tracing > 0 with a pipeline strategy)"
                  + ("; percentiles from summary.json stage_latency_ns above" if summ else ""))
        return c
    df = run.frame(src)
    c.caption = f"source: {src}.parquet, ns per decision tick (sampled ticks only)"

    def plot():
        from matplotlib.ticker import NullFormatter

        n = len(cols)
        ncol = min(n, 4)
        nrow = (n + ncol - 1) // ncol
        fig = new_figure(2.6 * ncol, 2.3 * nrow)
        for i, (stage, col) in enumerate(cols):
            ax = fig.add_subplot(nrow, ncol, i + 1)
            v = df[col].to_numpy().astype(np.float64)
            v = v[np.isfinite(v) & (v > 0)]
            if len(v):
                ax.hist(v, bins=np.geomspace(v.min(), max(v.max(), v.min() * 1.01), 30), color="#17becf")
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.axvline(np.percentile(v, 95), color="black", lw=0.8, ls="--")
            ax.set_title(f"{stage} (p95 dashed)", fontsize=8)
            ax.set_xlabel("ns")
        return fig

    c.png = png_bytes(draw(plot))
    return c


def _has_positive(col) -> bool:
    v = col.to_numpy().astype(np.float64)
    return bool((np.isfinite(v) & (v > 0)).any())


CHARTS: tuple[tuple[str, Callable], ...] = (
    ("equity", lambda run, t0: chart_equity(run, t0)),
    ("inventory", lambda run, t0: chart_inventory(run, t0)),
    ("quotes", lambda run, t0: chart_quotes(run, t0)),
    ("markouts", lambda run, t0: chart_markouts(run)),
    ("queue_eta", lambda run, t0: chart_queue_eta(run)),
    ("fill_rate", lambda run, t0: chart_fill_rate(run)),
    ("reasons", lambda run, t0: chart_reasons(run)),
    ("stage_latency", lambda run, t0: chart_stage_latency(run)),
)


# ------------------------------------------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px} h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:28px}
table{border-collapse:collapse;font-size:12px;margin:8px 0} td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:8px;font-size:11px;overflow-x:auto} img{max-width:100%}
.note{color:#8a6d3b;background:#fcf8e3;padding:4px 8px} figcaption{font-size:12px;color:#555}
.ok{color:#2ca02c} .bad{color:#d62728}
"""


def img_tag(png: bytes, alt: str) -> str:
    """``<img>`` with the PNG embedded as a base64 data URI."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def html_page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def chart_section(c: Chart) -> str:
    parts = [f'<section id="{c.key}"><h2>{html.escape(c.title)}</h2>']
    if c.png is not None:
        parts.append(f"<figure>{img_tag(c.png, c.title)}<figcaption>{html.escape(c.caption)}</figcaption></figure>")
    elif c.caption:
        parts.append(f"<p>{html.escape(c.caption)}</p>")
    if c.note:
        parts.append(f'<p class="note">skipped: {html.escape(c.note)}</p>')
    parts.extend(c.tables_html)
    parts.append("</section>")
    return "\n".join(parts)


def summary_rows(summary: dict) -> tuple[list[dict], list[dict]]:
    """(top-level key/value rows, per-symbol rows) of a summary dict."""
    top = [{"key": k, "value": v} for k, v in summary.items() if not isinstance(v, (dict, list))]
    per = []
    for sym, vals in (summary.get("per_symbol") or {}).items():
        if isinstance(vals, dict):
            per.append({"symbol": sym, **vals})
    return top, per


#: Columns of the parts table of a merged run (``mmlab backtest --jobs N``).
PART_COLUMNS = ("symbol", "day", "start", "end", "events", "n_orders", "n_fills", "volume_qty", "fees", "pnl_net",
                "position_final", "dir")


def parts_section(summary: dict) -> list[str]:
    """HTML of the per-day and per-part tables of a merged run's summary (nothing for a single run)."""
    parts = summary.get("parts")
    if not isinstance(parts, list) or not parts:
        return []
    out = ['<section id="parts"><h2>Parts (independent backtests per symbol and day)</h2>',
           "<p>each part starts flat; its final position is marked at its final exchange mid (pnl_net); "
           "the equity curve carries each symbol's pnl from one day to the next</p>"]
    per_day = summary.get("per_day")
    if isinstance(per_day, dict) and per_day:
        rows = [{"day": d, **v} for d, v in sorted(per_day.items()) if isinstance(v, dict)]
        out.append(html_table(rows, ["day", "events", "n_fills", "volume_qty", "fees", "pnl_net"]))
    out.append(html_table(parts, [c for c in PART_COLUMNS if any(c in r for r in parts)]))
    out.append("</section>")
    return out


# ---------------------------------------------------------------------------------------------- public API


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the PNG charts and ``report.html`` of a run directory and return the path of ``report.html``.

    Parameters
    ----------
    run_dir : a directory written by ``mmlab.sim.engine.write_run`` (``summary.json`` required, every other
        file optional: charts whose inputs are absent are skipped with a note in the report).
    out_dir : where the files go; default: ``run_dir`` itself.

    Returns
    -------
    Path of ``report.html`` (self-contained: the PNGs are embedded as base64 data URIs and also written beside
    it as ``<chart>.png``).

    Raises
    ------
    DataError
        ``run_dir`` is not a run directory or one of its files is unreadable.
    """
    run = M.load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path
    out.mkdir(parents=True, exist_ok=True)
    t0 = run_t0(run)
    charts = [fn(run, t0) for _, fn in CHARTS]
    for c in charts:
        if c.png is not None:
            (out / f"{c.key}.png").write_bytes(c.png)
    top, per = summary_rows(run.summary)
    nav = " | ".join(f'<a href="#{c.key}">{html.escape(c.title)}</a>' for c in charts)
    if run.summary.get("parts"):
        nav = '<a href="#parts">Parts</a> | ' + nav
    body = [
        f"<h1>Backtest report: {html.escape(run.name)}</h1>",
        (f"<p>run directory <code>{html.escape(str(run.path))}</code>; config id "
         f"<code>{html.escape(str(run.manifest.get('config_id', '')))}</code>; seed "
         f"{html.escape(str(run.manifest.get('seed', '')))}; events {html.escape(_fmt(run.summary.get('events')))}</p>"),
        f"<p>{nav} | <a href=\"#config\">Config</a> | <a href=\"#manifest\">Manifest</a></p>",
        '<section id="summary"><h2>Summary</h2>', html_table(top, ["key", "value"]),
    ]
    if per:
        cols = ["symbol"] + sorted({k for r in per for k in r if k != "symbol"})
        body.append(html_table(per, cols))
    body.append("</section>")
    body.extend(parts_section(run.summary))
    body.extend(chart_section(c) for c in charts)
    notes = list(run.notes) + [f"{c.title}: {c.note}" for c in charts if c.note]
    body.append('<section id="notes"><h2>Notes</h2>'
                + ("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>" if notes else "<p>none</p>")
                + "</section>")
    body.append(f'<section id="config"><h2>Config</h2><pre>{html.escape(run.config_text or "(config.toml absent)")}</pre></section>')
    body.append(f'<section id="manifest"><h2>Manifest</h2><pre>{html.escape(json.dumps(run.manifest, indent=2, sort_keys=True))}</pre></section>')
    path = out / "report.html"
    path.write_text(html_page(f"mmlab report {run.name}", "\n".join(body)))
    return path
