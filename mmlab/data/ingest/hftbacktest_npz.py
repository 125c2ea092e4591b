"""hftbacktest data files (``.npz``/``.npy``) <-> normalized event rows.

Reading (:func:`parse`, source ``hftbacktest-npz``)
    * 2.x layout: a structured array with hftbacktest's event fields (``ev`` u64, ``exch_ts`` i64, ``local_ts`` i64,
      ``px`` f64, ``qty`` f64, ``order_id`` u64, ``ival`` i64, ``fval`` f64), stored under the key ``data``.
      The event kind is ``ev & 0xff`` (1 depth, 2 trade, 3 depth clear, 4 depth snapshot, 5 best bid/offer), the
      side is the BUY (1 << 29) / SELL (1 << 28) flag, and EXCH (1 << 31) / LOCAL (1 << 30) say which processor
      sees the event. hftbacktest's own converters write an event that arrives out of exchange order twice (an
      EXCH-only copy in exchange order, a LOCAL-only copy in local order). Rows with the LOCAL flag are the
      stream in local order; an EXCH-only copy matching a LOCAL-only row is a duplicate and is dropped (counted
      in ``extra["exchange_only_duplicates"]``). Custom events 103/104 of hftbacktest's Binance converter (best
      bid/ask from bookTicker) become BBO rows; other kinds (mark price, funding, L3 order events) are skipped and
      counted in ``extra["skipped_events"]``.
    * 1.x layout: an (N, 6) float array (event, exch_ts, local_ts, side, px, qty), where a timestamp of -1 marks
      the copy a processor must not see (see ``hftbacktest.data.utils.migration2``). The two copies of a split
      event are paired (first in, first out, by kind, side, price and quantity) to recover both timestamps.
    * Time unit: hftbacktest uses ns; the unit is checked against the magnitude (``--local-ts-unit`` overrides).
    * A depth clear with a side (hftbacktest clears "up to" ``px``) becomes a CLEAR row of that side with
      ``price`` = that ``px``; our book clears the whole side (the snapshot that follows rebuilds it).
    * ``batch_end``: hftbacktest has no batch flag. Files written by :func:`write_npz` carry the flag in an extra
      array ``mmlab_batch_end``; for other files a batch is a run of consecutive rows sharing (exch_ts,
      local_ts) and the same family (book: depth/clear/snapshot; trades; BBO).
    * ``update_id``: ``ival`` for files written by :func:`write_npz`, else -1.
    * Venue: ``opts.venue``, else the one stored by :func:`write_npz`, else ``binance-usdm`` (hftbacktest's
      reference venue). Symbol: ``opts.symbol``, else the stored one, else a token of the file name that ends
      with a quote currency (``btcusdt_20240808.npz`` -> ``BTCUSDT``).

Writing (:func:`to_hftbacktest_events`, :func:`write_npz`)
    Rows map one to one to hftbacktest events (kind -> event code, side -> BUY/SELL flag, side 0 -> no flag,
    ``update_id`` -> ``ival``). Our rows are in local order; a row whose exchange time is out of order is
    emitted twice (EXCH-only at its exchange position, LOCAL-only at its local position), so that every
    EXCH event is in exchange-time order and every LOCAL event in local-time order, as hftbacktest requires.
    ``batch_end`` has no place in hftbacktest's record: :func:`write_npz` stores it beside ``data`` as
    ``mmlab_batch_end`` (one flag per event row) with the venue/symbol/tick/lot in ``mmlab_meta``;
    hftbacktest reads ``data`` only.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, deque
from pathlib import Path

import numpy as np
from numba import njit

from mmlab.data.ingest.common import UNIT_TO_NS, IngestOptions, ParsedStream, detect_ts_unit, source_record
from mmlab.data.schema import NUMPY_DTYPES
from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, Kind, Side, hftbacktest_event_dtype

__all__ = ["parse", "to_hftbacktest_events", "write_npz", "DEFAULT_VENUE", "HftEv"]

#: Venue of files that do not say (hftbacktest's examples are Binance USD-M).
DEFAULT_VENUE = "binance-usdm"
#: Marker stored in ``mmlab_meta`` by :func:`write_npz`.
NPZ_FORMAT = "mmlab-hftbacktest-npz"


class HftEv:
    """hftbacktest 2.x event codes and flags (``hftbacktest.types``)."""

    DEPTH_EVENT = 1
    TRADE_EVENT = 2
    DEPTH_CLEAR_EVENT = 3
    DEPTH_SNAPSHOT_EVENT = 4
    DEPTH_BBO_EVENT = 5
    BEST_BID_EVENT = 103  # hftbacktest.data.utils.binancefutures, opt "t": bookTicker best bid
    BEST_ASK_EVENT = 104  # ... best ask
    KIND_MASK = 0xFF
    EXCH_EVENT = 1 << 31
    LOCAL_EVENT = 1 << 30
    BUY_EVENT = 1 << 29
    SELL_EVENT = 1 << 28


_KIND_TO_EV = {Kind.DEPTH: HftEv.DEPTH_EVENT, Kind.TRADE: HftEv.TRADE_EVENT, Kind.CLEAR: HftEv.DEPTH_CLEAR_EVENT, Kind.SNAPSHOT: HftEv.DEPTH_SNAPSHOT_EVENT, Kind.BBO: HftEv.DEPTH_BBO_EVENT}
_EV_TO_KIND = {v: k for k, v in _KIND_TO_EV.items()}
_V2_FIELDS = ("ev", "exch_ts", "local_ts", "px", "qty")
_SYMBOL_TOKEN = re.compile(r"^[a-z0-9]*?(usdt|usdc|busd|fdusd|usd|btc|eth|bnb|perp)$", re.IGNORECASE)


# ------------------------------------------------------------------------------------------------- writing


@njit(cache=True)
def merge_event_order_nb(ts_exch, exch_order, out_idx, out_flags, exch_flag, local_flag):
    """Interleave rows (in local order) with their exchange-order positions; returns the number of events."""
    n = len(ts_exch)
    i = 0
    j = 0
    k = 0
    while i < n or j < n:
        if i < n and j < n and exch_order[j] == i:
            out_idx[k] = i
            out_flags[k] = exch_flag | local_flag
            i += 1
            j += 1
        elif j < n and (i >= n or ts_exch[exch_order[j]] <= ts_exch[i]):
            out_idx[k] = exch_order[j]
            out_flags[k] = exch_flag
            j += 1
        else:
            out_idx[k] = i
            out_flags[k] = local_flag
            i += 1
        k += 1
    return k


def _columns_of(columns) -> dict[str, np.ndarray]:
    if hasattr(columns, "to_numpy") and hasattr(columns, "columns") and not isinstance(columns, dict):
        return {c: columns[c].to_numpy() for c in EVENT_COLUMNS}
    missing = [c for c in EVENT_COLUMNS if c not in columns]
    if missing:
        raise DataError(f"event columns {missing} are missing; expected the store columns {', '.join(EVENT_COLUMNS)}")
    return {c: np.asarray(columns[c]) for c in EVENT_COLUMNS}


def _events(columns) -> tuple[np.ndarray, np.ndarray]:
    """hftbacktest events and, per event, the batch_end flag of the row it came from."""
    c = _columns_of(columns)
    n = len(c["ts_exch"])
    ts_local = c["ts_local"].astype(np.int64)
    if n > 1 and np.any(np.diff(ts_local) < 0):
        raise DataError("rows must be sorted by ts_local (as the store keeps them) before conversion to hftbacktest events")
    kind = c["kind"].astype(np.int64)
    side = c["side"].astype(np.int64)
    price = c["price"].astype(np.float64).copy()
    bad_kind = ~np.isin(kind, list(_KIND_TO_EV))
    if bad_kind.any():
        raise DataError(f"row {int(np.flatnonzero(bad_kind)[0])} has kind {int(kind[bad_kind][0])}, which hftbacktest has no event for")
    code = np.zeros(n, dtype=np.uint64)
    for k, ev in _KIND_TO_EV.items():
        code[kind == k] = ev
    code[side > 0] |= np.uint64(HftEv.BUY_EVENT)
    code[side < 0] |= np.uint64(HftEv.SELL_EVENT)
    _clear_upto(kind, side, price, c["batch_end"].astype(bool))
    ts_exch = c["ts_exch"].astype(np.int64)
    exch_order = np.argsort(ts_exch, kind="stable")
    idx = np.empty(2 * n, dtype=np.int64)
    flags = np.empty(2 * n, dtype=np.uint64)
    m = merge_event_order_nb(ts_exch, exch_order, idx, flags, np.uint64(HftEv.EXCH_EVENT), np.uint64(HftEv.LOCAL_EVENT))
    idx, flags = idx[:m], flags[:m]
    ev = np.zeros(m, dtype=hftbacktest_event_dtype)
    ev["ev"] = code[idx] | flags
    ev["exch_ts"] = ts_exch[idx]
    ev["local_ts"] = ts_local[idx]
    ev["px"] = price[idx]
    ev["qty"] = c["qty"].astype(np.float64)[idx]
    ev["ival"] = c["update_id"].astype(np.int64)[idx]
    return ev, c["batch_end"].astype(bool)[idx]


def _clear_upto(kind, side, price, batch_end) -> None:
    """Give one-sided CLEAR rows without a price the "clear up to" price hftbacktest needs (in place).

    hftbacktest clears bids from the best down to ``px`` and asks from the best up to ``px``; a whole-side reset
    therefore needs the deepest price of the snapshot that follows (else 0 for bids, twice the top price for asks).
    """
    sided = np.flatnonzero((kind == Kind.CLEAR) & (side != 0) & ~(price > 0))
    if len(sided) == 0:
        return
    ends = np.flatnonzero(batch_end)
    top = float(np.nanmax(price)) if len(price) else 0.0
    for i in sided:
        e = ends[np.searchsorted(ends, i)] if np.searchsorted(ends, i) < len(ends) else len(kind) - 1
        sel = slice(i + 1, e + 1)
        lv = price[sel][(kind[sel] == Kind.SNAPSHOT) & (side[sel] == side[i])]
        if side[i] > 0:
            price[i] = float(lv.min()) if len(lv) else 0.0
        else:
            price[i] = float(lv.max()) if len(lv) else 2.0 * top


def to_hftbacktest_events(columns) -> np.ndarray:
    """Store rows (dict of numpy columns or a polars frame, sorted by ts_local) -> hftbacktest event array.

    The result has hftbacktest's ``event_dtype`` layout (:data:`mmlab.types.hftbacktest_event_dtype`) and
    can be given to ``hftbacktest.BacktestAsset().data([...])`` directly. ``batch_end`` is not carried
    (hftbacktest has no such flag); :func:`write_npz` keeps it in a side array.

    >>> ev = to_hftbacktest_events(columns)  # doctest: +SKIP
    """
    return _events(columns)[0]


def write_npz(source, path: str | os.PathLike, *, venue: str | None = None, symbol: str | None = None,
              tick_size: float | None = None, lot_size: float | None = None) -> Path:
    """Write events as an hftbacktest ``.npz`` (key ``data``), plus ``mmlab_batch_end`` and ``mmlab_meta``.

    Parameters
    ----------
    source : dict of store columns, a polars DataFrame, or a store day partition directory
        (``<root>/<venue>/<SYMBOL>/date=YYYY-MM-DD``) or one of its part files; venue, symbol, tick and lot
        then come from the store's ``_meta.json`` unless given.
    path : output file (``.npz`` is appended by numpy if missing).
    """
    if isinstance(source, (str, os.PathLike)):
        import polars as pl

        p = Path(source)
        files = sorted(p.glob("part-*.parquet")) if p.is_dir() else [p]
        if not files or not files[0].exists():
            raise DataError(f"{source}: no part-*.parquet files (give a store day directory <root>/<venue>/<SYMBOL>/date=YYYY-MM-DD)")
        cols = pl.concat([pl.read_parquet(f) for f in files])
        day_dir = files[0].parent
        meta_path = day_dir.parent / "_meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        venue = venue or meta.get("venue") or day_dir.parent.parent.name
        symbol = symbol or meta.get("symbol") or day_dir.parent.name
        tick_size = tick_size or meta.get("tick_size")
        lot_size = lot_size or meta.get("lot_size")
        source = cols
    ev, batch_end = _events(source)
    info = {"format": NPZ_FORMAT, "version": 1, "venue": venue, "symbol": symbol, "tick_size": tick_size, "lot_size": lot_size,
            "update_id_in": "ival", "batch_end_in": "mmlab_batch_end"}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, data=ev, mmlab_batch_end=batch_end, mmlab_meta=np.array(json.dumps(info)))
    return out if out.suffix == ".npz" else out.with_name(out.name + ".npz")


# ------------------------------------------------------------------------------------------------- reading


def _load(path: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file (check the path given to `mmlab data ingest`)")
    try:
        obj = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a numpy .npz/.npy file ({exc})") from exc
    if isinstance(obj, np.ndarray):
        return obj, None, {}
    with obj:
        keys = list(obj.keys())
        if "data" in keys:
            data = obj["data"]
        elif len([k for k in keys if not k.startswith("mmlab_")]) == 1:
            data = obj[[k for k in keys if not k.startswith("mmlab_")][0]]
        else:
            raise DataError(f"{path}: the npz holds arrays {keys} and none is named 'data' (hftbacktest's key); re-save it with np.savez(path, data=events)")
        batch = obj["mmlab_batch_end"] if "mmlab_batch_end" in keys else None
        meta = {}
        if "mmlab_meta" in keys:
            try:
                meta = json.loads(str(obj["mmlab_meta"]))
            except json.JSONDecodeError:
                meta = {}
    return data, batch, meta


def _to_v2(path: str, data: np.ndarray) -> tuple[dict, str]:
    """Columns ev, exch_ts, local_ts, px, qty (+ ival) of either layout, and the layout name."""
    if data.dtype.names is not None:
        missing = [f for f in _V2_FIELDS if f not in data.dtype.names]
        if missing:
            raise DataError(f"{path}: event array lacks fields {missing}; expected hftbacktest's event_dtype fields {', '.join(_V2_FIELDS)}, order_id, ival, fval")
        cols = {f: np.asarray(data[f]) for f in _V2_FIELDS}
        cols["ev"] = cols["ev"].astype(np.uint64)
        cols["ival"] = np.asarray(data["ival"]).astype(np.int64) if "ival" in data.dtype.names else np.zeros(len(data), np.int64)
        return cols, "v2"
    if data.ndim == 2 and data.shape[1] == 6:
        code = data[:, 0].astype(np.int64).astype(np.uint64)
        side = data[:, 3]
        code[side == 1] |= np.uint64(HftEv.BUY_EVENT)
        code[side == -1] |= np.uint64(HftEv.SELL_EVENT)
        # 1.x marks the copy a processor must not see with a timestamp of -1.
        code[data[:, 1] > 0] |= np.uint64(HftEv.EXCH_EVENT)
        code[data[:, 2] > 0] |= np.uint64(HftEv.LOCAL_EVENT)
        cols = {"ev": code, "exch_ts": data[:, 1].astype(np.int64), "local_ts": data[:, 2].astype(np.int64), "px": data[:, 4].astype(np.float64),
                "qty": data[:, 5].astype(np.float64), "ival": np.zeros(len(data), np.int64)}
        return cols, "v1"
    raise DataError(
        f"{path}: array of dtype {data.dtype} and shape {data.shape} is neither hftbacktest 2.x events (structured ev, exch_ts, "
        "local_ts, px, qty, order_id, ival, fval) nor the 1.x (N, 6) float layout"
    )


def _scale(path: str, cols: dict, opts: IngestOptions) -> str:
    valid = cols["local_ts"][cols["local_ts"] > 0]
    unit = opts.local_ts_unit or (detect_ts_unit(float(valid.max())) if len(valid) else "ns")
    mul = UNIT_TO_NS[unit]
    if mul != 1:
        for c in ("exch_ts", "local_ts"):
            ts = cols[c]
            cols[c] = np.where(ts > 0, ts * mul, ts)
    return unit


def _symbol_of(path: str, opts: IngestOptions, meta: dict) -> str:
    if opts.symbol:
        return opts.symbol.upper()
    if meta.get("symbol"):
        return str(meta["symbol"]).upper()
    for tok in re.split(r"[-_.\s]+", Path(path).name):
        if _SYMBOL_TOKEN.match(tok) and not tok.isdigit() and tok.lower() not in ("usdm", "usd", "usdt", "coinm"):
            return tok.upper()
    raise DataError(f"{path}: hftbacktest files do not name their symbol and the file name holds none; pass --symbol")


def _read_file(path: str, opts: IngestOptions) -> tuple[dict, dict]:
    """Rows of one file (numpy columns) and its bookkeeping."""
    data, batch, meta = _load(path)
    ours = meta.get("format") == NPZ_FORMAT
    cols, layout = _to_v2(path, data)
    unit = _scale(path, cols, opts)
    n = len(cols["ev"])
    ev = cols["ev"]
    code = (ev & np.uint64(HftEv.KIND_MASK)).astype(np.int64)
    is_exch = (ev & np.uint64(HftEv.EXCH_EVENT)) != 0
    is_local = (ev & np.uint64(HftEv.LOCAL_EVENT)) != 0
    side = np.zeros(n, dtype=np.int8)
    side[(ev & np.uint64(HftEv.BUY_EVENT)) != 0] = Side.BID
    side[(ev & np.uint64(HftEv.SELL_EVENT)) != 0] = Side.ASK
    kind = np.zeros(n, dtype=np.uint8)
    for hev, k in _EV_TO_KIND.items():
        kind[code == hev] = k
    kind[code == HftEv.BEST_BID_EVENT] = Kind.BBO
    side[code == HftEv.BEST_BID_EVENT] = Side.BID
    kind[code == HftEv.BEST_ASK_EVENT] = Kind.BBO
    side[code == HftEv.BEST_ASK_EVENT] = Side.ASK
    known = kind > 0
    skipped = Counter(int(c) for c in code[~known])
    keep = known.copy()
    exch_ts = cols["exch_ts"].copy()
    quarantine: list[dict] = []
    # EXCH-only copies duplicate a LOCAL-only row of the same event; pair them first in, first out.
    exch_only = np.flatnonzero(known & is_exch & ~is_local)
    local_only = np.flatnonzero(known & is_local & ~is_exch)
    duplicates = 0
    if len(exch_only):
        base = ev & ~np.uint64(HftEv.EXCH_EVENT | HftEv.LOCAL_EVENT)
        px_bits = cols["px"].view(np.int64)
        qty_bits = cols["qty"].view(np.int64)

        def key(i: int):
            k = (int(base[i]), int(px_bits[i]), int(qty_bits[i]))
            return k + (int(cols["exch_ts"][i]), int(cols["local_ts"][i])) if layout == "v2" else k

        pending: dict[tuple, deque] = {}
        for i in local_only:
            pending.setdefault(key(i), deque()).append(i)
        for i in exch_only:
            q = pending.get(key(i))
            if q:
                li = q.popleft()
                if exch_ts[li] <= 0:
                    exch_ts[li] = exch_ts[i]
                keep[i] = False
                duplicates += 1
    bad_local = keep & (cols["local_ts"] <= 0)
    bad_exch = keep & (exch_ts <= 0)
    for mask, why in (
        (keep & ~is_exch & ~is_local, "event flagged neither EXCH_EVENT nor LOCAL_EVENT"),
        (bad_local, "event without a local timestamp (an exchange-only event)"),
        (bad_exch & ~bad_local, "event without an exchange timestamp (its exchange copy was not found)"),
    ):
        idx = np.flatnonzero(mask & keep)
        if len(idx):
            quarantine.append({"file": path, "line": int(idx[0]), "reason": f"{why}: {len(idx)} rows, first at index {int(idx[0])} (ev={int(ev[idx[0]])})", "rows": len(idx)})
            keep[idx] = False
    sel = np.flatnonzero(keep)
    out = {
        "ts_exch": exch_ts[sel],
        "ts_local": cols["local_ts"][sel],
        "kind": kind[sel],
        "side": side[sel],
        "price": cols["px"][sel].astype(np.float64),
        "qty": cols["qty"][sel].astype(np.float64),
        "update_id": cols["ival"][sel] if ours else np.full(len(sel), -1, dtype=np.int64),
    }
    clear = out["kind"] == Kind.CLEAR
    out["price"][clear & ~((out["price"] > 0) & np.isfinite(out["price"]))] = 0.0
    out["qty"][clear] = 0.0
    if ours and batch is not None and len(batch) == n:
        out["batch_end"] = np.asarray(batch, dtype=bool)[sel]
        batch_src = "mmlab_batch_end"
    else:
        fam = np.where(np.isin(out["kind"], (Kind.DEPTH, Kind.CLEAR, Kind.SNAPSHOT)), 1, out["kind"].astype(np.int64))
        be = np.ones(len(sel), dtype=bool)
        if len(sel) > 1:
            be[:-1] = (out["ts_exch"][1:] != out["ts_exch"][:-1]) | (out["ts_local"][1:] != out["ts_local"][:-1]) | (fam[1:] != fam[:-1])
        out["batch_end"] = be
        batch_src = "derived: runs of equal (exch_ts, local_ts, family)"
    rows_q = sum(q["rows"] for q in quarantine)
    info = {
        "layout": layout, "unit": unit, "meta": meta, "quarantine": quarantine, "rows_quarantined": rows_q,
        "rows_in": len(sel) + rows_q, "skipped": skipped, "duplicates": duplicates, "batch_end": batch_src,
    }
    return {c: np.ascontiguousarray(out[c], dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS}, info


def parse(paths: list[str], *, venue: str | None, source: str, opts: IngestOptions) -> list[ParsedStream]:
    """Parse hftbacktest ``.npz``/``.npy`` files into one :class:`ParsedStream` per symbol (see module doc).

    ``venue`` is None for this format source: ``opts.venue``, else the venue stored by :func:`write_npz`, else
    ``binance-usdm``.
    """
    streams: dict[tuple[str, str], ParsedStream] = {}
    for path in paths:
        cols, info = _read_file(path, opts)
        meta = info["meta"]
        v = venue or opts.venue or meta.get("venue") or DEFAULT_VENUE
        sym = _symbol_of(path, opts, meta)
        s = streams.get((v, sym))
        if s is None:
            s = streams[(v, sym)] = ParsedStream(venue=v, symbol=sym, columns=cols)
            s.extra = {"hftbacktest_layouts": [], "skipped_events": {}, "exchange_only_duplicates": 0, "batch_end_source": info["batch_end"]}
            s.feed_latency = {"kind": "recorded", "note": "local_ts of the hftbacktest file"}
            s.local_ts_unit = info["unit"]
            if meta.get("tick_size"):
                s.tick_size = float(meta["tick_size"])
            if meta.get("lot_size"):
                s.lot_size = float(meta["lot_size"])
        else:
            s.columns = {c: np.concatenate([s.columns[c], cols[c]]) for c in EVENT_COLUMNS}
        s.rows_in += info["rows_in"]
        for q in info["quarantine"]:
            s.add_quarantine(q["file"], q["line"], q["reason"], q["rows"])
        s.sources.append(source_record(path, rows_in=info["rows_in"], layout=info["layout"]))
        s.extra["hftbacktest_layouts"] = sorted(set(s.extra["hftbacktest_layouts"]) | {info["layout"]})
        for code, k in info["skipped"].items():
            s.extra["skipped_events"][str(code)] = s.extra["skipped_events"].get(str(code), 0) + k
        s.extra["exchange_only_duplicates"] += info["duplicates"]
    return list(streams.values())
