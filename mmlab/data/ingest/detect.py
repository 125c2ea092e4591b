"""Which ingest source a raw file is, from its name and its first lines.

``detect(paths)`` peeks at each file (the first ~2 MB of its decompressed text; gzip and single-member zip are
opened transparently) and returns one ``--source`` name of :data:`mmlab.data.ingest.SOURCES`:

- ``<int> {json}`` lines with Binance streams (``@depth``, ``@trade``, ``@bookTicker``, envelope
  ``{"stream","data"}``, bare messages, or an inline ``{"lastUpdateId",...}`` snapshot): ``binance-usdm``,
  ``binance-coinm`` (COIN-M symbols ``BTCUSD_PERP``, ``ETHUSD_240927``) or ``binance-spot`` (diffs without
  ``pu``; trades with ``M`` and without ``X``; bookTicker without ``e``);
- cryptofeed JSON lines (``{"t":"header","exchange":"BYBIT",...}``): ``bybit`` (every venue the capture's
  connections reach; pass ``--source bybit-linear`` or ``bybit-spot`` to keep one);
- ``<int> {"topic":...}`` lines (Bybit frames with a local timestamp): ``bybit-linear`` or ``bybit-spot`` from
  the trade ids (spot ids are numeric, linear ids are UUIDs); ambiguous without a trade;
- ``*_ob<N>.data`` / ``*_ob<N>.data.zip``, or lines that are bare Bybit frames: ``bybit-dump``;
- a Tardis CSV header ``exchange,symbol,timestamp,local_timestamp,...``: ``tardis``;
- a Binance historical CSV header (``symbol,timestamp,first_update_id,...``, trades, aggTrades, bookTicker) or a
  trades/quotes parquet table: ``binance-csv``;
- ``*.npz``: ``hftbacktest-npz``.

Anything else, files of different sources, or a file that fits several sources raises a DataError that lists
the valid ``--source`` values.
"""

from __future__ import annotations

import gzip
import os
import re
import zipfile
import zlib
from pathlib import Path

import msgspec

from mmlab.errors import DataError

__all__ = ["detect", "detect_file"]

#: Decompressed bytes looked at per file.
PEEK_BYTES = 2 << 20
#: Lines looked at per file (within PEEK_BYTES).
PEEK_LINES = 2000

_OB_DUMP = re.compile(r"_ob\d+\.data(\.zip)?$", re.IGNORECASE)
_COINM_SYMBOL = re.compile(r"^[A-Z0-9]+USD_(PERP|\d{6})$", re.IGNORECASE)
_TS_JSON = re.compile(rb"^\s*(\d+)(?:\.\d+)?\s+(\{.*)$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)

# Header columns of the Binance historical CSV files the binance-csv parser reads.
_BINANCE_CSV_HEADERS = (
    ("symbol", "timestamp", "first_update_id", "last_update_id"),
    ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker"),
    ("agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker"),
    ("update_id", "best_bid_price", "best_bid_qty", "best_ask_price", "best_ask_qty"),
)
_TARDIS_HEADER = ("exchange", "symbol", "timestamp", "local_timestamp")

_json = msgspec.json.Decoder()


class _Unknown(Exception):
    """The file does not look like any source; the text says what it looked like."""


def _valid_sources() -> str:
    from mmlab.data.ingest import SOURCES

    return ", ".join(sorted(SOURCES))


def detect(paths: list[str | os.PathLike]) -> str:
    """The ``--source`` name of raw files, when their content makes it unambiguous.

    Parameters
    ----------
    paths : raw files of one ingest (all must be of the same source).

    Returns
    -------
    str : a key of :data:`mmlab.data.ingest.SOURCES`.

    Raises
    ------
    DataError : unknown or ambiguous content, or files of different sources; the message lists the valid
        ``--source`` values.

    Examples
    --------
    >>> detect(["../shared/data/real/binance_usdm/usdm_btcusdt_20240808.gz"])  # doctest: +SKIP
    'binance-usdm'
    """
    if not paths:
        raise DataError(f"no input files to detect the source of; pass files and --source (one of {_valid_sources()})")
    found = {os.fspath(p): detect_file(p) for p in paths}
    kinds = sorted(set(found.values()))
    if len(kinds) > 1:
        detail = "; ".join(f"{Path(p).name}: {s}" for p, s in found.items())
        raise DataError(
            f"the input files are of different sources ({detail}); ingest each source separately, "
            f"with --source one of {_valid_sources()}"
        )
    return kinds[0]


def detect_file(path: str | os.PathLike) -> str:
    """The ``--source`` name of one raw file (see the module docstring); DataError if unknown or ambiguous."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file (check the path given to `mmlab data ingest`)")
    try:
        return _detect(p)
    except _Unknown as exc:
        raise DataError(
            f"cannot tell the source of {p}: {exc}. Pass --source with one of {_valid_sources()}"
        ) from None


def _detect(p: Path) -> str:
    name = p.name
    if name.lower().endswith(".npz"):
        return "hftbacktest-npz"
    if _OB_DUMP.search(name):
        return "bybit-dump"
    if name.lower().endswith(".parquet"):
        return _detect_parquet(p)
    head = _peek(p)
    lines = [ln for ln in head.split(b"\n")[:PEEK_LINES] if ln.strip()]
    if len(head) >= PEEK_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line of a cut peek may be incomplete
    if not lines:
        raise _Unknown("it is empty")
    first = lines[0].strip()
    if first[:1] == b"{":
        return _detect_json_lines(lines)
    if _TS_JSON.match(first):
        return _detect_timestamped(lines)
    header = tuple(c.strip().strip('"').lower() for c in first.decode("utf-8", "replace").split(","))
    if header[: len(_TARDIS_HEADER)] == _TARDIS_HEADER:
        return "tardis"
    for h in _BINANCE_CSV_HEADERS:
        if header[: len(h)] == h:
            return "binance-csv"
    raise _Unknown(f"its first line {first[:80]!r} is no known capture line or CSV header")


def _peek(p: Path) -> bytes:
    """First PEEK_BYTES of the decompressed text (a truncated gzip yields what is readable)."""
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        out = bytearray()
        try:
            with gzip.open(p, "rb") as g:
                while len(out) < PEEK_BYTES:
                    chunk = g.read(1 << 16)
                    if not chunk:
                        break
                    out += chunk
        except (EOFError, OSError, zlib.error):
            pass  # truncated or corrupt: decide from what was readable; the reader reports the damage
        return bytes(out[:PEEK_BYTES])
    if magic == b"PK\x03\x04":
        with zipfile.ZipFile(p) as zf:
            members = [n for n in zf.namelist() if not n.endswith("/")]
            if len(members) != 1:
                raise _Unknown(f"it is a zip of {len(members)} files {members[:5]} (expected exactly one)")
            if _OB_DUMP.search(members[0]):
                return b'{"topic":"orderbook"}\n'  # a Bybit daily dump whatever the zip is called
            with zf.open(members[0]) as m:
                return m.read(PEEK_BYTES)
    with open(p, "rb") as f:
        return f.read(PEEK_BYTES)


def _detect_parquet(p: Path) -> str:
    import pyarrow.parquet as pq

    try:
        cols = {c.lower() for c in pq.read_schema(p).names}
    except Exception as exc:  # pyarrow raises several types for a non-parquet file
        raise _Unknown(f"it is not a readable parquet file ({exc})") from None
    if {"trade_id", "price", "quantity", "buyer_maker"} <= cols:
        return "binance-csv"
    if {"bid", "ask", "bid_size", "ask_size"} <= cols:
        return "binance-csv"
    raise _Unknown(f"its parquet columns {sorted(cols)} are neither a Binance trades nor a quotes table")


def _decode(raw: bytes):
    try:
        return _json.decode(raw)
    except msgspec.DecodeError:
        return None


def _detect_json_lines(lines: list[bytes]) -> str:
    first = _decode(lines[0].strip())
    if not isinstance(first, dict):
        raise _Unknown(f"its first line is not a JSON object: {lines[0][:80]!r}")
    if first.get("t") == "header":
        exchange = str(first.get("exchange", "")).upper()
        if exchange != "BYBIT":
            raise _Unknown(f"it is a cryptofeed capture of {exchange or 'an unnamed exchange'}; only BYBIT captures are read")
        return _bybit_cryptofeed_venue(first, lines)
    if "topic" in first:
        return "bybit-dump"
    if "stream" in first or "e" in first or "lastUpdateId" in first:
        raise _Unknown("its lines are Binance messages without the '<local_ts> ' prefix the capture format needs")
    raise _Unknown(f"its JSON lines (keys {sorted(first)[:8]}) are no known capture format")


def _bybit_cryptofeed_venue(header: dict, lines: list[bytes]) -> str:
    # A capture may open connections to further endpoints anywhere in the file, so a peek cannot tell which venues
    # it holds: ingest all of them (the Bybit parser splits the file by endpoint).
    return "bybit"


def _detect_timestamped(lines: list[bytes]) -> str:
    msgs = []
    for ln in lines:
        m = _TS_JSON.match(ln.strip())
        if m:
            obj = _decode(m.group(2))
            if isinstance(obj, dict):
                msgs.append(obj)
    if not msgs:
        raise _Unknown("its '<int> <json>' lines hold no decodable JSON object")
    if any("topic" in o for o in msgs):
        return _bybit_timestamped_venue(msgs)
    return _binance_venue(msgs)


def _bybit_timestamped_venue(msgs: list[dict]) -> str:
    ids = []
    for o in msgs:
        if str(o.get("topic", "")).startswith("publicTrade") and isinstance(o.get("data"), list):
            ids += [str(t.get("i")) for t in o["data"] if isinstance(t, dict) and "i" in t]
    if ids:
        if all(_UUID.match(i) for i in ids):
            return "bybit-linear"
        if all(i.isdigit() for i in ids):
            return "bybit-spot"
    raise _Unknown(
        "it holds Bybit frames with local timestamps, which do not say whether they are linear or spot "
        "(no publicTrade ids in the first lines); pass --source bybit-linear or --source bybit-spot"
    )


def _binance_venue(msgs: list[dict]) -> str:
    futures_votes = spot_votes = 0
    symbols: set[str] = set()
    binance = False
    for o in msgs:
        stream = o.get("stream") if isinstance(o.get("stream"), str) else None
        data = o["data"] if isinstance(o.get("data"), dict) else o
        if stream and "@" in stream:
            symbols.add(stream.split("@", 1)[0].upper())
            binance = True
        if isinstance(data.get("s"), str):
            symbols.add(data["s"].upper())
        ev = data.get("e")
        if ev == "depthUpdate":
            binance = True
            if "pu" in data:
                futures_votes += 1
            else:
                spot_votes += 1
        elif ev == "trade":
            binance = True
            if "X" in data:
                futures_votes += 1
            elif "M" in data:
                spot_votes += 1
        elif ev == "bookTicker":
            binance = True
            futures_votes += 1  # spot bookTicker messages have no "e"
        elif ev is None and all(k in data for k in ("u", "b", "B", "a", "A")):
            binance = True
            spot_votes += 1
        elif ev is None and "lastUpdateId" in data:
            binance = True
            if "E" in data or "T" in data:
                futures_votes += 1
    if not binance:
        raise _Unknown("its '<int> <json>' lines are neither Binance streams (@depth, @trade, @bookTicker) nor Bybit frames")
    if futures_votes and spot_votes:
        raise _Unknown("its lines mix Binance futures messages (diffs with pu) and spot messages")
    if not futures_votes and not spot_votes:
        raise _Unknown("its first lines do not say whether it is a Binance futures or spot capture")
    if spot_votes:
        return "binance-spot"
    coinm = {s for s in symbols if _COINM_SYMBOL.match(s)}
    if coinm and coinm != symbols:
        raise _Unknown(f"it mixes COIN-M symbols {sorted(coinm)} with other symbols {sorted(symbols - coinm)}")
    return "binance-coinm" if coinm else "binance-usdm"

