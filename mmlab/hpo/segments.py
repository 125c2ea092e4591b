"""A study's data window, loaded once per worker process and cut into segments (UTC days by default).

Trials of one worker reuse the same event arrays: :func:`load_segments` keeps them in a process-level cache
keyed by the ``[data]`` section, the split and the regime thresholds, so only the first trial reads parquet.
Each segment carries its regime label (:mod:`mmlab.hpo.regimes`) and its replay window prepared once
(``mmlab.data.bridge.ReplayWindow``: the rows without BBO, informational and never applied, their exchange-time
order and the BBO count), so a trial's backtest neither filters nor sorts the segment again (the results are
those of the raw events).

>>> from mmlab.config import load_config
>>> specs, segs = load_segments(load_config("experiments/grid_btcusdt.toml"), None)  # doctest: +SKIP
>>> [s.label for s in segs]  # doctest: +SKIP
['2024-07-18', '2024-07-19']
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

import numpy as np

from mmlab.data.bridge import ReplayWindow
from mmlab.errors import DataError
from mmlab.hpo.regimes import RegimeThresholds, classify_segments, segment_stats

NS_PER_DAY = 86_400 * 1_000_000_000

_CACHE: dict[str, tuple[list, list["Segment"]]] = {}


@dataclass
class Segment:
    """One run unit of a trial: events of [t0_ns, t1_ns) of local time, with its regime label."""

    index: int
    label: str  # "2024-07-19" for days, "2024-07-19T00:00" for shorter segments
    t0_ns: int
    t1_ns: int
    events: np.ndarray  # event_dtype, sorted by ts_local
    regime: str = "normal"
    stats: dict | None = None
    replay: ReplayWindow | None = None  # what the loop replays (see prepare_replay); None = use events

    @property
    def run_events(self) -> np.ndarray | ReplayWindow:
        """What to pass to ``run_backtest(events=...)``: the prepared replay window when there is one (its BBO
        count goes into the summary's ``events_bbo_skipped``, as a run on the raw events counts them)."""
        return self.replay if self.replay is not None else self.events


def prepare_replay(seg: Segment) -> Segment:
    """Fill ``seg.replay`` with the ``ReplayWindow`` of ``seg.events`` (BBO rows left out and counted, the rest in
    ts_local and in exchange-time order), so each run of the segment takes both from it instead of sorting."""
    from mmlab.data.bridge import replay_window

    seg.replay = replay_window(seg.events)
    return seg


def _label(t0_ns: int, day: bool) -> str:
    t = dt.datetime.fromtimestamp(t0_ns / 1e9, tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%d") if day else t.strftime("%Y-%m-%dT%H:%M")


def split_events(events: np.ndarray, segment_ns: int | None) -> list[tuple[int, int, np.ndarray]]:
    """Cut ``events`` (sorted by ts_local) at multiples of ``segment_ns`` of local time since the epoch
    (None = UTC days, 0 = one segment); empty segments are skipped."""
    if not len(events):
        return []
    ts = events["ts_local"]
    lo, hi = int(ts[0]), int(ts[-1])
    if segment_ns == 0:
        return [(lo, hi + 1, events)]
    step = NS_PER_DAY if segment_ns is None else int(segment_ns)
    edges = np.arange((lo // step) * step, hi + step, step, dtype=np.int64)
    cuts = np.searchsorted(ts, edges, side="left")
    out = []
    for k in range(len(edges) - 1):
        a, b = int(cuts[k]), int(cuts[k + 1])
        if b > a:
            out.append((max(int(edges[k]), lo), min(int(edges[k + 1]), hi + 1), events[a:b]))
    return out


def load_segments(cfg, segment_ns: int | None, thresholds: RegimeThresholds | None = None, *,
                  cache: bool = True) -> tuple[list, list[Segment]]:
    """``(symbol specs, segments)`` of ``cfg.data``'s window, from the worker's cache after the first call."""
    from mmlab.data import bridge
    from mmlab.sim.engine import SymbolSpec

    th = thresholds or RegimeThresholds()
    key = json.dumps([asdict(cfg.data), segment_ns, asdict(th)], sort_keys=True, default=str)
    if cache and key in _CACHE:
        return _CACHE[key]
    d = cfg.data
    events, infos = bridge.load_events(d.root, d.venue, list(d.symbols), d.start, d.end)
    if not len(events):
        raise DataError(f"no events for {list(d.symbols)} on {d.venue} in {d.root} between {d.start} and {d.end} "
                        "(check [base.data] of the study and the store: mmlab data ls)")
    specs = [SymbolSpec(i.symbol, i.tick_size, i.lot_size, i.contract_type, i.contract_size, i.meta) for i in infos]
    ticks = np.array([s.tick_size for s in specs])
    parts = split_events(events, segment_ns)
    stats = [segment_stats(ev, ticks, t0, t1, th.sample_ms) for t0, t1, ev in parts]
    labels = classify_segments(stats, th)
    segs = [Segment(index=k, label=_label(t0, segment_ns is None), t0_ns=t0, t1_ns=t1, events=np.ascontiguousarray(ev),
                    regime=lab["regime"], stats=lab)
            for k, ((t0, t1, ev), lab) in enumerate(zip(parts, labels))]
    for seg in segs:
        prepare_replay(seg)
    if cache:
        _CACHE[key] = (specs, segs)
    return specs, segs


def clear_cache() -> None:
    """Forget the loaded windows (tests; a worker keeps them for its lifetime)."""
    _CACHE.clear()
