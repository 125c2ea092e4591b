"""Raw captures -> normalized parquet store.

``ingest(paths, source, out_root, opts)`` picks the parser module for ``source`` (a venue name or a format
name), parses the files into one stream per symbol and writes each with the common rules of
:mod:`mmlab.data.ingest.common`.
"""

from __future__ import annotations

import importlib
import os

from mmlab.data.ingest.common import IngestOptions, IngestResult, ParsedStream, write_stream
from mmlab.errors import DataError

#: source name -> (module under mmlab.data.ingest, venue argument passed to its parse())
SOURCES: dict[str, tuple[str, str | None]] = {
    "binance-usdm": ("binance", "binance-usdm"),
    "binance-coinm": ("binance", "binance-coinm"),
    "binance-spot": ("binance", "binance-spot"),
    "bybit-linear": ("bybit", "bybit-linear"),
    "bybit-spot": ("bybit", "bybit-spot"),
    "bybit": ("bybit", None),  # any Bybit v5 capture or dump, every venue (endpoint) it holds
    "bybit-dump": ("bybit", None),
    "tardis": ("tardis", None),
    "binance-csv": ("binance_csv", None),
    "hftbacktest-npz": ("hftbacktest_npz", None),
}

__all__ = ["SOURCES", "IngestOptions", "IngestResult", "ParsedStream", "ingest", "parse", "detect_source"]


def detect_source(paths: list[str | os.PathLike]) -> str:
    """Source name of raw files whose content makes it unambiguous, else a DataError asking for --source."""
    from mmlab.data.ingest.detect import detect

    return detect(paths)


def parse(paths: list[str | os.PathLike], source: str | None, opts: IngestOptions) -> list[ParsedStream]:
    if not paths:
        raise DataError("no input files given to ingest")
    if source is None or source == "auto":
        source = detect_source(paths)
    if source not in SOURCES:
        raise DataError(f"unknown --source {source!r}: use one of {', '.join(sorted(SOURCES))} (or omit it to auto-detect)")
    module_name, venue = SOURCES[source]
    module = importlib.import_module(f"mmlab.data.ingest.{module_name}")
    return module.parse([os.fspath(p) for p in paths], venue=venue, source=source, opts=opts)


def ingest(paths: list[str | os.PathLike], source: str | None, out_root: str | os.PathLike, opts: IngestOptions | None = None) -> list[IngestResult]:
    """Ingest raw files into ``out_root``; returns one result per (venue, symbol) written."""
    opts = opts or IngestOptions()
    streams = parse(paths, source, opts)
    if opts.symbol:
        streams = [s for s in streams if s.symbol.upper() == opts.symbol.upper()]
        if not streams:
            raise DataError(f"symbol {opts.symbol!r} not found in {', '.join(map(str, paths))}")
    if not streams:
        raise DataError(f"no market data found in {', '.join(map(str, paths))}")
    return [write_stream(s, out_root, opts) for s in streams]
