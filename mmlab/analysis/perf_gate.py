"""Stage perf gate: per-stage latency percentiles of a run against the committed budgets.

The budgets file (``benchmarks/stage_budgets.json``)::

    {"units": "ns", "source": "...", "budgets": {"stage_fetch_md": {"p50": ..., "p95": ..., "p99": ...}, ...,
                                                 "tick_total": {...}}}

The current measurements are a run directory (its ``summary.json`` key ``stage_latency_ns`` =
``{stage: {p50, p95, p99}}``), a ``summary.json``, or a JSON file of that ``{stage: {p50, p95, p99}}`` shape
(optionally with ``"units"``, or wrapped as ``{"stage_latency_ns": ...}`` / ``{"budgets": ...}``).

A stage fails when its current p95 exceeds ``budget_p95 * (1 + threshold_pct / 100)``; a budgeted stage with no
measurement fails too (a gate must not pass because a stage stopped being timed) unless ``allow_missing``.

>>> ok, rows = perf_gate("benchmarks/stage_budgets.json", "experiments/runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mmlab.errors import DataError

#: Nanoseconds per unit accepted in a ``"units"`` field.
UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
PERCENTILES = ("p50", "p95", "p99")
#: Default budgets file, relative to the repository root.
DEFAULT_BASELINE = Path("benchmarks") / "stage_budgets.json"


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{p} line {exc.lineno}: invalid JSON ({exc.msg})") from exc
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc}") from exc


def _scale(units: Any, where: str) -> float:
    u = "ns" if units is None else str(units)
    if u not in UNIT_NS:
        raise DataError(f"{where}: units must be one of {sorted(UNIT_NS)}, got {units!r}")
    return UNIT_NS[u]


def _stage_table(d: Any, scale: float, where: str) -> dict[str, dict[str, float]]:
    """{stage: {p50, p95, p99}} in ns from a {stage: {pXX: number}} mapping (non-dict entries are skipped)."""
    if not isinstance(d, dict):
        raise DataError(f"{where}: expected an object {{stage: {{p50, p95, p99}}}}, got {type(d).__name__}")
    out = {}
    for stage, v in d.items():
        if not isinstance(v, dict):
            continue
        row = {}
        for p in PERCENTILES:
            x = v.get(p)
            if x is None:
                continue
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
                raise DataError(f"{where}: {stage}.{p} must be a finite number >= 0, got {x!r}")
            row[p] = float(x) * scale
        if row:
            out[str(stage)] = row
    return out


def load_budgets(path: str | Path) -> tuple[dict[str, dict[str, float]], dict]:
    """(budgets in ns {stage: {p50?, p95, p99?}}, the file's other fields) of a budgets file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"budgets file {p} does not exist (the committed one is {DEFAULT_BASELINE})")
    doc = _read_json(p)
    if not isinstance(doc, dict) or not isinstance(doc.get("budgets"), dict):
        raise DataError(f"{p}: expected {{\"budgets\": {{stage: {{\"p95\": ...}}}}, \"units\": \"ns\"}}")
    budgets = _stage_table(doc["budgets"], _scale(doc.get("units"), str(p)), str(p))
    no_p95 = [s for s, v in budgets.items() if "p95" not in v]
    if no_p95 or not budgets:
        raise DataError(f"{p}: every budget needs a p95; missing for {no_p95 or 'all stages'}")
    bad = [s for s, v in budgets.items() if v["p95"] <= 0]
    if bad:
        raise DataError(f"{p}: p95 budgets must be > 0, got 0 for {bad}")
    return budgets, {k: v for k, v in doc.items() if k != "budgets"}


def load_stage_latency(current: str | Path | dict) -> tuple[dict[str, dict[str, float]], str]:
    """(current {stage: {p50, p95, p99}} in ns, description of the source) from a run directory, a summary.json,
    a JSON file or a dict (see the module docstring for the accepted shapes)."""
    if isinstance(current, dict):
        doc, where = current, "current measurements (dict)"
    else:
        p = Path(current)
        if p.is_dir():
            p = p / "summary.json"
            if not p.exists():
                raise DataError(f"{p.parent} holds no summary.json: pass a run directory or a JSON file of "
                                "{stage: {p50, p95, p99}}")
        elif not p.exists():
            raise DataError(f"current measurements {p} do not exist (a run directory or a JSON file of "
                            "{stage: {p50, p95, p99}})")
        doc, where = _read_json(p), str(p)
    if not isinstance(doc, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    if "stage_latency_ns" in doc:
        table = doc["stage_latency_ns"]
        if table is None:
            raise DataError(f"{where}: stage_latency_ns is null (the run measured no stage timings); run with "
                            "stage timing enabled or pass a JSON file of {stage: {p50, p95, p99}}")
        out = _stage_table(table, 1.0, f"{where} stage_latency_ns")
    elif "budgets" in doc:
        out = _stage_table(doc["budgets"], _scale(doc.get("units"), where), where)
    else:
        out = _stage_table(doc, _scale(doc.get("units"), where), where)
    if not out:
        hint = " (a summary.json without stage_latency_ns: the engine did not time the stages)" if "pnl_net" in doc else ""
        raise DataError(f"{where}: no stage percentiles found{hint}; expected {{stage: {{p50, p95, p99}}}} in ns")
    return out, where


def perf_gate(baseline_path: str | Path, current: str | Path | dict, threshold_pct: float = 3.0,
              report_path: str | Path | None = None, *, allow_missing: bool = False) -> tuple[bool, list[dict]]:
    """Check per-stage p95 latencies against the budgets; optionally write a markdown report.

    Parameters
    ----------
    baseline_path : budgets file (``benchmarks/stage_budgets.json`` format).
    current : run directory, summary.json, JSON file or dict of ``{stage: {p50, p95, p99}}`` (ns unless the file
        says ``"units"``).
    threshold_pct : allowed p95 regression over the budget, percent.
    report_path : markdown report to write (parent directories are created).
    allow_missing : do not fail on budgeted stages absent from ``current``.

    Returns
    -------
    (ok, rows): ``ok`` is False on any regression (or missing stage); one row per stage (budgeted stages in the
    file's order, then unbudgeted ones) with ``stage, p50_ns, p95_ns, p99_ns, budget_p95_ns, limit_p95_ns,
    delta_pct, status`` where status is ``ok``, ``regression``, ``missing`` or ``unbudgeted``.

    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "b.json").write_text(json.dumps({"units": "ns", "budgets": {"stage_spread": {"p95": 100}}}))
    >>> perf_gate(d / "b.json", {"stage_spread": {"p50": 50, "p95": 110, "p99": 130}})[0]
    False
    """
    if not (isinstance(threshold_pct, (int, float)) and math.isfinite(threshold_pct) and threshold_pct >= 0):
        raise DataError(f"threshold_pct must be a finite number >= 0, got {threshold_pct!r}")
    budgets, info = load_budgets(baseline_path)
    cur, where = load_stage_latency(current)
    rows = []
    for stage in list(budgets) + [s for s in cur if s not in budgets]:
        b = budgets.get(stage)
        c = cur.get(stage, {})
        row = {"stage": stage, "p50_ns": c.get("p50"), "p95_ns": c.get("p95"), "p99_ns": c.get("p99"),
               "budget_p95_ns": b["p95"] if b else None, "limit_p95_ns": None, "delta_pct": None}
        if b is None:
            row["status"] = "unbudgeted"
        elif "p95" not in c:
            row["status"] = "missing"
        else:
            row["limit_p95_ns"] = b["p95"] * (1.0 + threshold_pct / 100.0)
            row["delta_pct"] = 100.0 * (c["p95"] - b["p95"]) / b["p95"]
            row["status"] = "regression" if c["p95"] > row["limit_p95_ns"] else "ok"
        rows.append(row)
    bad = {"regression"} | (set() if allow_missing else {"missing"})
    ok = not any(r["status"] in bad for r in rows)
    if report_path is not None:
        rp = Path(report_path)
        rp.parent.mkdir(parents=True, exist_ok=True)
        rp.write_text(markdown_report(ok, rows, threshold_pct, str(baseline_path), where, info, allow_missing))
    return ok, rows


def _num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}".replace(",", "_")


def markdown_report(ok: bool, rows: list[dict], threshold_pct: float, baseline: str, current: str,
                    info: dict | None = None, allow_missing: bool = False) -> str:
    """The gate's result as markdown: verdict, table, and one line per failing stage."""
    info = info or {}
    lines = [
        f"# Stage perf gate: {'PASS' if ok else 'FAIL'}",
        "",
        f"- baseline: `{baseline}`" + (f" (source: {info['source']})" if info.get("source") else ""),
        f"- current: `{current}`",
        f"- rule: current p95 <= budget p95 * (1 + {threshold_pct:g}%)"
        + ("" if allow_missing else "; every budgeted stage must be measured"),
        "",
        "| stage | p50 ns | p95 ns | p99 ns | budget p95 ns | delta p95 | status |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        d = "-" if r["delta_pct"] is None else f"{r['delta_pct']:+.2f}%"
        status = r["status"].upper() if r["status"] in ("regression", "missing") else r["status"]
        lines.append(f"| {r['stage']} | {_num(r['p50_ns'])} | {_num(r['p95_ns'])} | {_num(r['p99_ns'])} | "
                     f"{_num(r['budget_p95_ns'])} | {d} | {status} |")
    fails = [r for r in rows if r["status"] == "regression" or (r["status"] == "missing" and not allow_missing)]
    lines += ["", "## Violations", ""]
    if not fails:
        lines.append("none")
    for r in fails:
        if r["status"] == "regression":
            lines.append(f"- `{r['stage']}`: p95 {_num(r['p95_ns'])} ns vs budget {_num(r['budget_p95_ns'])} ns "
                         f"({r['delta_pct']:+.2f}% > +{threshold_pct:g}%)")
        else:
            lines.append(f"- `{r['stage']}`: budgeted but not measured in the current run")
    unb = [r["stage"] for r in rows if r["status"] == "unbudgeted"]
    if unb:
        lines += ["", f"Unbudgeted stages (not gated): {', '.join(unb)}"]
    return "\n".join(lines) + "\n"
