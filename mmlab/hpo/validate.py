"""Cross-checks before a run: store symbols against a reference table, and a config against its data.

``validate_symbols`` compares each ``<venue>/<SYMBOL>/_meta.json`` of a store with
``mmlab/data/symbols_reference.toml`` (tick size, lot size, contract type and size: a mismatch fails; fees
recorded in ``_meta.json`` or given by a config that differ from the reference warn). ``validate_config`` loads
a backtest config (every key and range check of :mod:`mmlab.config`) and checks it against the store: data
present for the window, fees sane, latencies plausible, order size on the lot grid, rollout horizon among the
label horizons. Each check is a row ``{item, check, status: ok|warn|fail, value, expected, message}``; the
result is ``ok`` when no row failed.

>>> ref = load_reference()
>>> ref[("binance-usdm", "BTCUSDT")]["tick_size"]
0.1
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path

from mmlab.errors import ConfigError, DataError, MmlabError

REFERENCE_PATH = Path(__file__).resolve().parent.parent / "data" / "symbols_reference.toml"
REFERENCE_KEYS = {"tick_size", "lot_size", "min_qty", "min_notional", "contract", "contract_size", "maker_fee",
                  "taker_fee", "source"}
#: Relative tolerance of size comparisons (float text round trips).
REL_TOL = 1e-9
#: Latencies above this are flagged as implausible (ms).
LATENCY_WARN_MS = 1000.0
#: |fee| above this fraction of notional is flagged (0.2%).
FEE_WARN = 0.002


def load_reference(path: str | os.PathLike | None = None) -> dict[tuple[str, str], dict]:
    """``{(venue, symbol): facts}`` of a reference TOML (default: the table shipped with mmlab)."""
    p = Path(path) if path is not None else REFERENCE_PATH
    if not p.exists():
        raise ConfigError(f"symbol reference table {p} does not exist (pass --reference PATH)")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from exc
    out = {}
    for venue, syms in raw.items():
        if not isinstance(syms, dict):
            raise ConfigError(f"{p}: [{venue}] must hold one table per symbol ([{venue}.BTCUSDT])")
        for sym, facts in syms.items():
            if not isinstance(facts, dict):
                raise ConfigError(f"{p}: [{venue}.{sym}] must be a table of facts")
            bad = sorted(set(facts) - REFERENCE_KEYS)
            if bad:
                raise ConfigError(f"{p}: [{venue}.{sym}] has unknown keys {bad}; valid: {sorted(REFERENCE_KEYS)}")
            for k in ("tick_size", "lot_size"):
                if not isinstance(facts.get(k), (int, float)) or facts[k] <= 0:
                    raise ConfigError(f"{p}: [{venue}.{sym}] {k} must be a number > 0, got {facts.get(k)!r}")
            out[(venue, sym)] = dict(facts)
    return out


def _row(item, check, status, value=None, expected=None, message="") -> dict:
    return {"item": item, "check": check, "status": status, "value": value, "expected": expected, "message": message}


def _same(a, b) -> bool:
    return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=0.0)


def _meta_fees(meta: dict) -> tuple[float | None, float | None]:
    fees = meta.get("fees")
    if not isinstance(fees, dict):
        return None, None
    mk = fees.get("maker_fee", fees.get("maker"))
    tk = fees.get("taker_fee", fees.get("taker"))
    return (float(mk) if mk is not None else None), (float(tk) if tk is not None else None)


def symbol_checks(venue: str, symbol: str, meta: dict, ref: dict | None) -> list[dict]:
    """Checks of one store symbol's ``_meta.json`` against its reference facts."""
    item = f"{venue}/{symbol}"
    if ref is None:
        return [_row(item, "reference", "warn", message="no reference facts for this symbol "
                     "(add a table to mmlab/data/symbols_reference.toml)")]
    rows = []
    for key in ("tick_size", "lot_size"):
        v, e = meta.get(key), ref[key]
        ok = _same(v, e)
        src = meta.get(f"{key}_source")
        rows.append(_row(item, key, "ok" if ok else "fail", v, e,
                         "" if ok else f"{key} {v!r} in _meta.json ({src or 'unknown source'}) differs from the "
                                       f"reference {e!r}; re-ingest with the venue's instrument facts"))
    contract = meta.get("contract") or {}
    ctype = contract.get("type", "linear") if isinstance(contract, dict) else str(contract)
    csize = contract.get("contract_size", 1.0) if isinstance(contract, dict) else 1.0
    e_type, e_size = ref.get("contract", "linear"), ref.get("contract_size", 1.0)
    rows.append(_row(item, "contract", "ok" if ctype == e_type else "fail", ctype, e_type,
                     "" if ctype == e_type else "contract type differs from the reference"))
    rows.append(_row(item, "contract_size", "ok" if _same(csize, e_size) else "fail", csize, e_size,
                     "" if _same(csize, e_size) else "contract size differs from the reference"))
    mk, tk = _meta_fees(meta)
    for key, v in (("maker_fee", mk), ("taker_fee", tk)):
        e = ref.get(key)
        if v is None or e is None:
            rows.append(_row(item, key, "ok", v, e, "not recorded in _meta.json" if v is None else "no reference"))
        else:
            rows.append(_row(item, key, "ok" if _same(v, e) else "warn", v, e,
                             "" if _same(v, e) else "fee differs from the venue's base tier (a VIP tier?)"))
    return rows


def config_fee_checks(cfg, ref_table: dict) -> list[dict]:
    """Checks of a config's [sim] fees: sane on their own and against the reference of each symbol."""
    s = cfg.sim
    rows = []
    item = "[sim]"
    ok = s.maker_fee <= s.taker_fee
    rows.append(_row(item, "maker_fee <= taker_fee", "ok" if ok else "warn", [s.maker_fee, s.taker_fee], None,
                     "" if ok else "a maker fee above the taker fee is unusual: check the order of the two"))
    ok = s.taker_fee >= 0
    rows.append(_row(item, "taker_fee >= 0", "ok" if ok else "warn", s.taker_fee, None,
                     "" if ok else "venues do not pay takers: check the sign (fees are fractions, negative = rebate)"))
    for key in ("maker_fee", "taker_fee"):
        v = getattr(s, key)
        ok = abs(v) <= FEE_WARN
        rows.append(_row(item, f"|{key}| <= {FEE_WARN:g}", "ok" if ok else "warn", v, None,
                         "" if ok else f"{key} = {v:g} is {v * 1e4:g} bps: fees are fractions of notional "
                                       "(0.0005 = 5 bps), not percent"))
    for sym in cfg.data.symbols:
        ref = ref_table.get((cfg.data.venue, sym))
        if ref is None:
            continue
        for key in ("maker_fee", "taker_fee"):
            v, e = getattr(s, key), ref.get(key)
            if e is None:
                continue
            ok = _same(v, e)
            rows.append(_row(f"{cfg.data.venue}/{sym}", f"[sim] {key} vs reference", "ok" if ok else "warn", v, e,
                             "" if ok else f"[sim] {key} = {v:g} differs from the venue's base tier {e:g} "
                                           "(fine for a VIP tier; otherwise fix [sim])"))
    return rows


def validate_symbols(root: str | os.PathLike, *, venue: str | None = None, symbol: str | None = None,
                     reference: str | os.PathLike | None = None, config: str | os.PathLike | None = None) -> dict:
    """Check every (matching) symbol of the store at ``root`` against the reference table."""
    from mmlab.data.store import list_symbols, read_meta

    table = load_reference(reference)
    if not Path(root).is_dir():
        raise DataError(f"store root {root} does not exist (build it with `mmlab data ingest ... --out {root}`)")
    pairs = [(v, s) for v, s in list_symbols(root) if (venue is None or v == venue) and (symbol is None or s == symbol)]
    if not pairs:
        raise DataError(f"no symbols with a _meta.json under {root}"
                        + (f" for venue={venue!r} symbol={symbol!r}" if venue or symbol else "")
                        + " (see `mmlab data ls`)")
    rows = []
    for v, s in pairs:
        rows += symbol_checks(v, s, read_meta(root, v, s), table.get((v, s)))
    if config is not None:
        from mmlab.config import load_config

        rows += config_fee_checks(load_config(config), table)
    return _result(rows)


def _result(rows: list[dict]) -> dict:
    counts = {k: sum(r["status"] == k for r in rows) for k in ("ok", "warn", "fail")}
    return {"ok": counts["fail"] == 0, "counts": counts, "checks": rows}


def _window_checks(cfg) -> list[dict]:
    from mmlab.data.bridge import parse_time_ns
    from mmlab.data.store import read_meta, symbol_dir, time_span

    d = cfg.data
    rows = []
    start, end = parse_time_ns(d.start), parse_time_ns(d.end)
    if start is not None and end is not None and start >= end:
        rows.append(_row("[data]", "start < end", "fail", [d.start, d.end], None, "the window is empty: start must be before end"))
    for sym in d.symbols:
        item = f"{d.venue}/{sym}"
        meta_path = symbol_dir(d.root, d.venue, sym) / "_meta.json"
        if not meta_path.exists():
            rows.append(_row(item, "data present", "fail", str(meta_path), None,
                             f"no store for {sym} on {d.venue} under {d.root} (run `mmlab data ingest ... --out {d.root}`)"))
            continue
        meta = read_meta(d.root, d.venue, sym)
        span = time_span(meta)
        lo, hi = span.get("ts_local_min"), span.get("ts_local_max")
        if lo is None or hi is None:
            rows.append(_row(item, "data present", "fail", None, None, "the store holds no days for this symbol"))
            continue
        w0 = start if start is not None else lo
        w1 = end if end is not None else hi + 1
        overlap = min(w1, hi + 1) - max(w0, lo)
        if overlap <= 0:
            rows.append(_row(item, "data present for the window", "fail", [d.start, d.end],
                             [span.get("first_day"), span.get("last_day")],
                             f"no rows in the window: the store covers local times {lo} .. {hi} ns "
                             f"({span.get('first_day')} .. {span.get('last_day')}); fix [data] start/end"))
        elif w0 < lo or w1 > hi + 1:
            rows.append(_row(item, "data present for the window", "warn", [d.start, d.end],
                             [span.get("first_day"), span.get("last_day")],
                             f"the window is only partly covered ({overlap / max(w1 - w0, 1):.1%} of it)"))
        else:
            rows.append(_row(item, "data present for the window", "ok", [d.start, d.end], None))
        for gap in meta.get("gaps", []) or []:
            rows.append(_row(item, "sequence gaps", "warn", gap, None, "the store recorded a sequence gap (re-synced)"))
            break
        lot = meta.get("lot_size")
        q = cfg.strategy.order_qty
        if lot:
            steps = q / float(lot)
            ok = abs(steps - round(steps)) < 1e-6 and round(steps) >= 1
            rows.append(_row(item, "order_qty on the lot grid", "ok" if ok else "warn", q, lot,
                             "" if ok else f"[strategy] order_qty {q:g} is not a positive multiple of the lot size "
                                           f"{lot:g}: orders are rounded down (and dropped below one lot)"))
    return rows


def validate_config(config, *, overrides=(), reference: str | os.PathLike | None = None) -> dict:
    """Load ``config`` and cross-check it (see the module doc). Never raises on a bad config: a failed load is
    a failed check naming the key and the fix."""
    from mmlab.config import load_config

    rows: list[dict] = []
    item = str(config)
    try:
        cfg = config if hasattr(config, "data") else load_config(config, overrides=list(overrides))
    except MmlabError as exc:
        rows.append(_row(item, "load", "fail", None, None, str(exc)))
        return _result(rows)
    rows.append(_row(item, "load", "ok", cfg.config_id, None, "keys, types and ranges valid"))
    rows += _window_checks(cfg)
    try:
        table = load_reference(reference)
    except ConfigError as exc:
        rows.append(_row("reference", "load", "fail", None, None, str(exc)))
        table = {}
    rows += config_fee_checks(cfg, table)
    s = cfg.sim
    for key in ("entry_latency_ms", "response_latency_ms", "cancel_latency_ms", "modify_latency_ms"):
        v = getattr(s, key)
        if v is None:
            continue
        ok = 0 <= v <= LATENCY_WARN_MS
        rows.append(_row("[sim]", f"0 <= {key} <= {LATENCY_WARN_MS:g}", "ok" if ok else "warn", v, None,
                         "" if ok else f"{key} = {v:g} ms is implausible for a colocated or cloud market maker"))
    if s.latency_model == "empirical":
        ok = bool(s.latency_table) and Path(s.latency_table).exists()
        rows.append(_row("[sim]", "latency_table exists", "ok" if ok else "fail", s.latency_table, None,
                         "" if ok else "latency_model = 'empirical' needs an existing latency_table file"))
    if s.latency_model == "random" and s.latency_jitter_ms == 0 and s.shock_prob == 0:
        rows.append(_row("[sim]", "random latency has randomness", "warn", 0.0, None,
                         "latency_model = 'random' with latency_jitter_ms = 0 and shock_prob = 0 is constant latency"))
    st = cfg.strategy
    try:
        from mmlab.sim.strategies import get_strategy

        get_strategy(st.name)
        rows.append(_row("[strategy]", "name registered", "ok", st.name))
    except MmlabError as exc:
        rows.append(_row("[strategy]", "name registered", "fail", st.name, None, str(exc)))
    ok = st.max_position >= st.order_qty
    rows.append(_row("[strategy]", "max_position >= order_qty", "ok" if ok else "warn", [st.max_position, st.order_qty],
                     None, "" if ok else "max_position below one order: the strategy can never quote a full order"))
    ro = cfg.rollout
    if ro.mode != "disabled":
        ok = any(math.isclose(h, ro.winrate_horizon_ms) for h in cfg.labels.horizons_ms)
        rows.append(_row("[rollout]", "winrate_horizon_ms among [labels] horizons_ms", "ok" if ok else "fail",
                         ro.winrate_horizon_ms, list(cfg.labels.horizons_ms),
                         "" if ok else "add winrate_horizon_ms to [labels] horizons_ms: the win rate needs that markout"))
    if cfg.model.id and not Path(cfg.model.registry).exists() and not Path(cfg.model.id).exists():
        rows.append(_row("[model]", "registry exists", "warn", cfg.model.registry, None,
                         f"model id {cfg.model.id!r} set but the registry {cfg.model.registry} does not exist"))
    return _result(rows)


def format_checks(res: dict) -> str:
    """Plain-text table of a validation result."""
    lines = [f"{'status':6s}  {'item':28s}  {'check':44s}  detail"]
    for r in res["checks"]:
        detail = r["message"] or (f"value {r['value']!r}" + (f", expected {r['expected']!r}" if r["expected"] is not None else ""))
        lines.append(f"{r['status'].upper():6s}  {r['item'][:28]:28s}  {r['check'][:44]:44s}  {detail}")
    c = res["counts"]
    lines.append(f"{c['ok']} ok, {c['warn']} warning(s), {c['fail']} failure(s): {'OK' if res['ok'] else 'FAILED'}")
    return "\n".join(lines)
