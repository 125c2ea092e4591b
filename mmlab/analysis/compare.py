"""Compare two run directories: metric deltas, config differences and a side-by-side HTML report.

>>> from mmlab.analysis.compare import compare_runs
>>> res = compare_runs("experiments/runs/a", "experiments/runs/b", out_dir="reports/a_vs_b")  # doctest: +SKIP
>>> res["metrics"]["pnl_net"]  # doctest: +SKIP
{'a': -7.18, 'b': -3.02, 'delta': 4.16, 'pct': 57.9}
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from mmlab.analysis import metrics as M
from mmlab.analysis import report as R

#: Summary keys that measure the machine rather than the strategy (listed last in the delta table).
MACHINE_KEYS = ("wall_s", "loop_s", "load_s", "jit_s", "events_per_s")


def metric_deltas(summary_a: dict, summary_b: dict) -> dict[str, dict]:
    """Every numeric key of either summary (nested as dotted keys): ``{key: {a, b, delta, pct}}``.

    ``delta = b - a``; ``pct = 100 * (b - a) / |a|``. A value absent from one summary, ``null`` or not finite is
    ``None`` there, and then ``delta`` and ``pct`` are ``None``; ``pct`` is also ``None`` when ``a == 0``.

    >>> metric_deltas({"pnl_net": -2.0, "n_fills": 10}, {"pnl_net": 1.0, "n_fills": 10})["pnl_net"]
    {'a': -2.0, 'b': 1.0, 'delta': 3.0, 'pct': 150.0}
    """
    a = M.numeric_summary(summary_a)
    b = M.numeric_summary(summary_b)
    keys = list(a) + [k for k in b if k not in a]
    out = {}
    for k in keys:
        va, vb = a.get(k), b.get(k)
        delta = pct = None
        if va is not None and vb is not None:
            delta = vb - va
            if va != 0:
                pct = 100.0 * delta / abs(va)
        out[k] = {"a": va, "b": vb, "delta": delta, "pct": pct}
    return out


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(config_a: dict, config_b: dict) -> dict[str, dict]:
    """Config keys (dotted ``section.key``) whose values differ: ``{key: {a, b}}`` (``None`` = absent)."""
    a, b = _flatten(config_a), _flatten(config_b)
    return {k: {"a": a.get(k), "b": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "run"


def _json_clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_clean(x) for x in v]
    return v


def _equity_png(runs: list[M.RunData], decs: list, labels: list[str]) -> bytes | None:
    series = [(d.series if d is not None else None) for d in decs]
    if not any(s is not None and s.height for s in series):
        return None
    t0 = min(int(s["ts_local"].min()) for s in series if s is not None and s.height)

    def plot():
        fig = R.new_figure(10, 4.5)
        ax = fig.add_subplot(1, 1, 1)
        for s, lab, color in zip(series, labels, ("#1f77b4", "#ff7f0e")):
            if s is None or not s.height:
                continue
            x = R._minutes(s["ts_local"].to_numpy(), t0)
            ax.plot(x, s["pnl"].to_numpy(), color=color, lw=1.4, label=f"{lab} pnl")
            ax.plot(x, s["spread_capture"].to_numpy(), color=color, lw=0.9, ls="--", label=f"{lab} spread capture")
            ax.plot(x, s["inventory_pnl"].to_numpy(), color=color, lw=0.9, ls=":", label=f"{lab} inventory pnl")
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.set_xlabel(f"minutes since {R._utc(t0)}")
        ax.set_ylabel("pnl (quote currency)")
        ax.set_title("equity curves")
        ax.legend(loc="best", ncol=2)
        return fig

    return R.png_bytes(R.draw(plot))


def _markouts_png(curves: list, labels: list[str]) -> bytes | None:
    if not any(c.height for c in curves):
        return None

    def plot():
        fig = R.new_figure(11, 3.8)
        axes = fig.subplots(1, 2, sharey=True)
        for ax, cur, lab in zip(axes, curves, labels):
            if cur.height:
                R.plot_markouts(ax, cur)
                ax.legend(loc="best")
            else:
                ax.text(0.5, 0.5, "no markout columns", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"markouts - {lab}")
        return fig

    return R.png_bytes(R.draw(plot))


def compare_runs(run_a: str | Path, run_b: str | Path, out_dir: str | Path | None = None) -> dict:
    """Compare run ``b`` against run ``a`` and write ``compare.html`` + ``compare.json`` (+ PNGs).

    Parameters
    ----------
    run_a, run_b : run directories (``mmlab.sim.engine.write_run``); ``a`` is the reference.
    out_dir : where the files go; default ``reports/compare/<run a>_vs_<run b>`` (relative to the working
        directory).

    Returns
    -------
    dict with ``run_a``, ``run_b`` (paths), ``name_a``, ``name_b`` (run ids), ``metrics``
    (:func:`metric_deltas` of the two ``summary.json``), ``config_diff`` (:func:`config_diff`),
    ``pnl_decomposition`` ({``a``, ``b``} totals of :func:`mmlab.analysis.metrics.pnl_decomposition`) and
    ``report`` (path of ``compare.html``). JSON-serializable (non-finite numbers become ``None``); ``metrics``
    lists strategy metrics first and machine timings (:data:`MACHINE_KEYS`) last.
    """
    ra, rb = M.load_run(run_a), M.load_run(run_b)
    name_a, name_b = ra.name, rb.name
    lab_a, lab_b = ("A " + name_a, "B " + name_b)
    if out_dir is None:
        out_dir = Path("reports") / "compare" / f"{_safe(name_a)}_vs_{_safe(name_b)}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    deltas = metric_deltas(ra.summary, rb.summary)
    # Strategy metrics first, machine timings last.
    deltas = {k: deltas[k] for k in sorted(deltas, key=lambda k: k in MACHINE_KEYS)}
    cdiff = config_diff(ra.config, rb.config)
    decs = [M.pnl_decomposition(ra), M.pnl_decomposition(rb)]
    curves = [M.markout_curves(ra.frame("fills")), M.markout_curves(rb.frame("fills"))]
    eq_png = _equity_png([ra, rb], decs, [lab_a, lab_b])
    mk_png = _markouts_png(curves, [lab_a, lab_b])

    rows = [{"key": k, "a": v["a"], "b": v["b"], "b - a": v["delta"], "pct": v["pct"]} for k, v in deltas.items()]
    body = [
        f"<h1>Run comparison: {html.escape(name_a)} vs {html.escape(name_b)}</h1>",
        R.html_table([{"run": "A", "id": name_a, "path": str(ra.path), "config id": ra.manifest.get("config_id")},
                      {"run": "B", "id": name_b, "path": str(rb.path), "config id": rb.manifest.get("config_id")}],
                     ["run", "id", "path", "config id"]),
        '<section id="config_diff"><h2>Config differences</h2>',
        R.html_table([{"key": k, "a": v["a"], "b": v["b"]} for k, v in cdiff.items()], ["key", "a", "b"])
        if cdiff else "<p>identical configs</p>",
        "</section>",
        '<section id="metrics"><h2>Metric deltas (B - A; pct of |A|)</h2>',
        R.html_table(rows, ["key", "a", "b", "b - a", "pct"]), "</section>",
        '<section id="pnl"><h2>Pnl decomposition</h2>',
    ]
    dec_tot = {"a": decs[0].totals if decs[0] else None, "b": decs[1].totals if decs[1] else None}
    comps = ("pnl", "spread_capture", "inventory_pnl", "fees")
    body.append(R.html_table([{"component": c, "a": (dec_tot["a"] or {}).get(c), "b": (dec_tot["b"] or {}).get(c),
                               "b - a": ((dec_tot["b"] or {}).get(c, np.nan) - (dec_tot["a"] or {}).get(c, np.nan))}
                              for c in comps], ["component", "a", "b", "b - a"]))
    body.append("</section>")
    body.append('<section id="equity"><h2>Equity curves</h2>')
    if eq_png is not None:
        (out / "equity_compare.png").write_bytes(eq_png)
        body.append(f"<figure>{R.img_tag(eq_png, 'equity curves')}<figcaption>solid: pnl; dashed: spread capture; "
                    "dotted: inventory pnl (see the single-run report for the definitions)</figcaption></figure>")
    else:
        body.append('<p class="note">skipped: neither run has a pnl time series (state.parquet equity)</p>')
    body.append("</section>")
    body.append('<section id="markouts"><h2>Markouts</h2>')
    if mk_png is not None:
        (out / "markouts_compare.png").write_bytes(mk_png)
        body.append(f"<figure>{R.img_tag(mk_png, 'markouts')}<figcaption>mean markout by side and horizon, "
                    "A left, B right</figcaption></figure>")
    else:
        body.append('<p class="note">skipped: neither run has markout_bps_&lt;H&gt; fill columns</p>')
    body.append("</section>")
    path = out / "compare.html"
    path.write_text(R.html_page(f"mmlab compare {name_a} vs {name_b}", "\n".join(body)))

    result = _json_clean({
        "run_a": str(ra.path), "run_b": str(rb.path), "name_a": name_a, "name_b": name_b,
        "metrics": deltas, "config_diff": cdiff, "pnl_decomposition": dec_tot, "report": str(path),
    })
    (out / "compare.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    return result
