"""Venue adapters of the live runner: frames in, normalized ``event_dtype`` rows out.

An adapter knows its endpoint, the subscribe / ping messages and how to turn one received frame into event
rows with the same per-frame normalizer ``mmlab data ingest`` uses for a recording of that venue.
"""

from __future__ import annotations

from mmlab.errors import ConfigError

#: live.venue -> adapter module under live.venues
ADAPTERS = {"bybit-linear": "bybit", "bybit-spot": "bybit", "binance-usdm": "binance"}


def make_adapter(venue: str, symbols: list[str], instruments: dict, *, book_depth: int):
    """The adapter of ``venue`` for ``symbols`` (symbol_id = position in the list); ``instruments`` maps
    SYMBOL -> {tick_size, lot_size}."""
    import importlib

    if venue not in ADAPTERS:
        raise ConfigError(f"[live] venue {venue!r} has no live adapter; use one of {sorted(ADAPTERS)}")
    mod = importlib.import_module(f"live.venues.{ADAPTERS[venue]}")
    return mod.Adapter(venue, symbols, instruments, book_depth=book_depth)
