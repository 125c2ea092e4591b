"""``mmlab live --paper``: venue frames -> event rows -> the simulator's loop (same book kernel, same strategy,
paper fills from the same matching/queue/latency kernels) -> decisions, fills, logs and metrics.

Tasks of one session (one asyncio loop, one thread):

- reader: connects (exponential backoff, resubscribe on every connect), stamps each frame with a strictly
  increasing local ns time as the websocket client hands it over ("frame received"), records it and queues it.
  It then steps the queued frames itself (:func:`step_due`) as soon as no further frame is already read ahead
  by the websocket client, or once the oldest queued frame has waited ``live.latency_budget_us``; otherwise it
  reads on, so under a backlog every queued frame goes into one step. The queue holds at most
  ``live.queue_max`` entries; when full, new frames are coalesced into the last entry (``backpressure_total``);
  past ``live.max_backlog_frames`` the backlog is dropped and every book re-synced (resubscribe).
- keepalive: ``{"op":"ping"}`` every ``live.ping_interval_s``.
- processor: every ``live.step_ms`` (or when frames are queued outside the reader: REST snapshots, frames
  left when a connection ends) normalizes the queued frames, sets the per-symbol
  gates (warm-up, stale feed, invalid book, kill switch) and steps the paper exchange up to
  ``now - live.horizon_margin_ms``: the decisions' actions are emitted when that loop call returns (and, in real
  mode, handed to the order manager). Only then is the step recorded: its rows stay in the loop's buffers and are
  written in batches (ticks/fills/orders JSONL, decisions.parquet, counters; :meth:`LiveRunner.drain_outputs`)
  when no frame waits, every ``DRAIN_ROWS`` rows or ``DRAIN_AFTER_NS``, before metrics are published, at
  shutdown and when the session fails; the files are the same bytes as writing each step's rows at once. The
  rows are encoded on the event loop; the file writes (logs, decisions.parquet row groups) and the recording's
  compression run on writer threads in order (:class:`live.recorder.OrderedWriter`; a failed write is raised
  as ``RecordingError`` by the next hand-over, at shutdown or by :meth:`LiveRunner.save_outputs`).
- metrics: every ``METRICS_PUBLISH_NS`` a publication runs, one part per step (:meth:`LiveRunner._publication`:
  held outputs, counters, latency histograms in chunks, each symbol, the model), on metric children resolved
  once; gauges are set only when their value changed.

At the end (duration, signal or :meth:`LiveRunner.stop`): queued frames are processed, every symbol is gated
SHUTDOWN so the strategy cancels its working orders, the paper exchange runs until those cancels are answered,
and ``decisions.parquet``, ``summary.json`` and the logs are written and flushed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import gc
import json
import math
import os
import signal
import time
from pathlib import Path

import msgspec
import numpy as np

from live.metrics import LiveMetrics, observe_many
from live.paper import PaperExchange
from live.recorder import OrderedWriter, Recorder
from live.venues import make_adapter
from live.venues.common import EventBuffer, Frame
from mmlab.errors import ConfigError
from mmlab.types import (
    LiveGate,
    OrderEventKind,
    decision_quote_dtype,
    decision_row_dtype,
    sim_action_dtype,
)

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


_FRAME_NAMES = [f"frames_{f.name.lower()}" for f in Frame]
_GAP = int(Frame.GAP)
_MARKET = int(Frame.MARKET)
_SENT = int(OrderEventKind.SENT)

#: The hot path counts in plain integers; they reach the prometheus metrics at most this often (and at the end).
METRICS_PUBLISH_NS = 250 * NS_PER_MS
#: Latency samples added to the prometheus histograms per part of a publication.
HIST_CHUNK = 256

#: Longest wait for the venue's answer to our websocket close (at the end of a session the unread frames
#: queued ahead of it may hold it back; the session does not wait longer for it).
CLOSE_TIMEOUT_S = 1.0

#: A received frame of at least this many bytes (a book snapshot: Bybit orderbook.200 ones are ~8 KiB and their
#: step costs ~0.5 ms, mostly the loop call clearing and refilling the books) is not batched with the frames
#: queued before it: those are stepped first, up to its receive time, so their actions do not wait for it.
SPLIT_FRAME_BYTES = 4096

#: Frames the websocket client reads ahead of the reader task (its default, 16, pauses the socket while a step
#: runs, and the venue's sends wait for the reader instead of filling the buffer).
WS_MAX_QUEUE = 4096


def step_due(read_ahead: int, waited_ns: int, budget_ns: int) -> bool:
    """The reader's stepping rule after it queued a frame: step now when the websocket client holds no further
    frame (``read_ahead == 0``: nothing to batch with, so waiting only adds latency) or when the oldest queued
    frame has waited ``budget_ns`` (since it was received); otherwise read the next frame first, so a backlog is
    stepped as one batch (one compiled pass over its bytes, one loop call).

    >>> step_due(0, 0, 100_000), step_due(3, 20_000, 100_000), step_due(3, 100_000, 100_000)
    (True, False, True)
    """
    return read_ahead == 0 or waited_ns >= budget_ns


def ws_read_ahead(ws) -> int:
    """Frames the websocket client (``websockets`` asyncio connection) has received and not yet handed over; 0
    when the client does not expose its buffer (every frame is then stepped on its own)."""
    try:
        return len(ws.recv_messages.frames)
    except (AttributeError, TypeError):
        return 0


#: Decision rows held before they are written to decisions.parquet as one row group.
DECISIONS_CHUNK_ROWS = 50_000
#: Decision rows whose stage timings are kept for the summary's ``stage_latency_ns`` (the most recent ones).
STAGE_TIMING_ROWS = 1_000_000

#: With deferred outputs (:attr:`LiveRunner.defer_outputs`), held output rows are written when no frame is
#: queued, else once this many are held or the oldest is this old, after the step that emitted actions (and
#: always before metrics are published, at shutdown and when the session fails).
DRAIN_ROWS = 512
DRAIN_AFTER_NS = 100 * NS_PER_MS
#: An idle moment (no frame queued or read ahead) writes the held rows once the oldest is this old (0: at
#: once, the counters of the rows current). Under a steady feed the idle moments are brief gaps between
#: frames; a larger value (e.g. 50 ms) makes fewer, larger writes (measured: the same p99, more msg/s).
DRAIN_IDLE_AFTER_NS = 0
#: With deferred outputs, received frames are handed to the recording's gzip when no frame waits, or after the
#: step that brings this many unwritten lines (below the recorder's own batch, so the compression never runs
#: between a frame's receipt and its step).
RECORD_LINES = 16
#: Unwritten recording lines worth a write when the reader finds no frame waiting (fewer wait for more).
RECORD_IDLE_LINES = 8


#: Per-symbol counters of the decision ticks: the metric child each feeds (``stale`` -> mm_pricing_on_stale).
_SYM_COUNTERS = ("dec", "hit", "miss", "warm", "stale", "fills")
_DEC, _HIT, _MISS, _WARM, _STALE, _FILLS = range(len(_SYM_COUNTERS))


def gate_name(reason: int) -> str:
    """``open`` for a strategy reason code, else the name of the LiveGate the gated decision returned."""
    return LiveGate(-reason).name.lower() if reason < 0 and -reason in LiveGate._value2member_map_ else "open"


def _fnum(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


_json_encoder = msgspec.json.Encoder()

#: Keys of the JSON lines of ticks.jsonl, fills.jsonl and orders.jsonl, in their order.
_TICK_KEYS = ("ts_local", "symbol", "best_bid", "best_ask", "mid", "quote_bid", "quote_ask", "n_quotes_bid",
              "n_quotes_ask", "n_actions", "n_working", "position", "fees", "pnl", "reason", "gate")
_FILL_KEYS = ("ts_exch", "ts_local", "symbol", "order_id", "order_seq", "side", "price", "price_ticks", "qty",
              "maker", "fee", "queue_ahead_qty", "position_after", "route")
_ORDER_KEYS = ("ts_local", "ts_exch", "symbol", "order_id", "order_seq", "event", "side", "price", "qty",
               "leaves_qty", "reason")


def _json_lines(keys: tuple, cols: tuple) -> bytes:
    """One JSON object per row (``cols``: one list of Python values per key), newline-terminated."""
    return _json_encoder.encode_lines([dict(zip(keys, t)) for t in zip(*cols)])


def _or_none(x: np.ndarray, keep: np.ndarray) -> list:
    """``x`` as Python floats, None where ``keep`` is False."""
    vals = x.tolist()
    if keep.all():
        return vals
    return [v if k else None for v, k in zip(vals, keep.tolist())]


#: Row dtypes of the decisions.parquet parts.
_DEC_DTYPES = {"decisions": decision_row_dtype, "dec_quotes": decision_quote_dtype, "dec_actions": sim_action_dtype}


@contextlib.contextmanager
def session_gc():
    """For a session: the objects alive at its start (modules, compiled kernels, the runner's buffers) leave the
    cyclic collector's generations (``gc.freeze``), so its full collections scan only what the session allocated
    (tens of ms less each); they return at the end."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


_OEV_KINDS = {int(k): k for k in OrderEventKind}
_OEV_NAMES = {k: k.name.lower() for k in OrderEventKind}


class LiveRunner:
    """One paper-trading session. ``await runner.run()`` returns the summary dict (also in summary.json)."""

    def __init__(self, cfg, *, out_dir: str | os.PathLike | None = None, instruments: dict | None = None,
                 clock_ns=time.time_ns, real=None):
        from mmlab.sim.strategies import get_strategy

        self.cfg = cfg
        lc = cfg.live
        self.lc = lc
        self.venue = lc.venue
        self.symbols = [s.upper() for s in (lc.symbols or cfg.data.symbols)]
        if not self.symbols:
            raise ConfigError("[live] symbols is empty and [data] symbols names none: pass --symbols BTCUSDT,...")
        self.clock_ns = clock_ns
        self.out = Path(out_dir or lc.out_dir or Path("experiments") / "live" /
                        dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"))
        self.out.mkdir(parents=True, exist_ok=True)
        self.recorder = Recorder(self.out / "recording", self.venue)
        self.inst_bodies: list[bytes] = []
        self._given_instruments = instruments
        self.strategy = get_strategy(cfg.strategy.name)
        self.adapter = None
        self.paper = None
        self.metrics = LiveMetrics()
        self.buffer = EventBuffer()
        self.queue: collections.deque = collections.deque()  # entries: lists of (ts_local_ns, raw)
        self.backlog = 0
        self.wake = asyncio.Event()
        self.stopping = False
        self.ws = None
        self.last_ts = 0
        self.t_start_ns = 0
        self.invalid_since = np.full(len(self.symbols), -1, dtype=np.int64)
        self._refresh_pending = False  # some invalid_since >= 0: a valid book's next market frame observes md_refresh
        self.gate_now = np.zeros(len(self.symbols), dtype=np.int64)
        self.counts = collections.Counter()
        # Latency samples for the summary's percentiles: the most recent million of each.
        self.frame_lat_ns: collections.deque = collections.deque(maxlen=1_000_000)
        self.step_ns: collections.deque = collections.deque(maxlen=1_000_000)
        # JSON lines, encoded by msgspec (same values, compact separators) into 1 MiB write buffers.
        self._logs = {k: open(self.out / f"{k}.jsonl", "wb", buffering=1 << 20) for k in ("ticks", "fills", "orders")}
        self._dec_parts: dict[str, list] = {"decisions": [], "dec_quotes": [], "dec_actions": []}
        # Decision rows go to decisions.parquet in row groups of this many rows as the session runs (memory stays
        # bounded); only their stage timings stay, the most recent STAGE_TIMING_ROWS, for the summary.
        self.decisions_chunk_rows = DECISIONS_CHUNK_ROWS
        self._dec_rows = 0
        self._dec_writer = None  # pyarrow ParquetWriter of decisions.parquet (used on the writer thread)
        self._dec_started = False  # a row group of decisions.parquet was handed to the writer
        #: With deferred outputs, the file writes of the logs and of decisions.parquet run on this thread, in
        #: order (the rows are encoded on the event loop; a failed write is raised by the next hand-over, the
        #: shutdown or :meth:`save_outputs`).
        self.writer = OrderedWriter(f"outputs of {self.out}")
        self._dec_timings: collections.deque = collections.deque()
        self.server_log: list[str] = []
        self.stage_latency = None
        self.real = real  # live.real.session.RealSession in real mode: the decision actions also go to the venue
        self.failsafe = None  # live.failsafe.FailSafeMonitor with [live] failsafe = true
        self.rollout = None  # live.rollout.LiveRollout with an A/B ([live] ab_*) or a canary ([rollout] mode)
        #: Output rows of a step (ticks/fills/orders logs, decisions.parquet, counters) are written after its
        #: actions are emitted, in batches (:meth:`drain_outputs`); False writes them in every step.
        self.defer_outputs = True
        self.drain_rows = DRAIN_ROWS
        self.drain_after_ns = DRAIN_AFTER_NS
        self.drain_when_idle = True
        #: Frames of at least this many bytes are stepped apart from the frames queued before them
        #: (:data:`SPLIT_FRAME_BYTES`; 0 or less: never).
        self.split_frame_bytes = SPLIT_FRAME_BYTES
        self.drain_idle_after_ns = DRAIN_IDLE_AFTER_NS
        self._held_rows = 0  # output rows held since the last drain
        self._held_since_ns = 0  # perf_counter_ns of the first of them
        self._held_dec_steps: list[int] = []  # decision rows of each step since the last drain
        self._rec_written = 0  # recorder.frames when its lines were last handed to gzip
        #: perf_counter_ns when the last step's actions were handed to the exchange (paper loop, real venue).
        self.emitted_pc_ns = 0
        self.feed_s = None  # start -> the feed's end (wall s), before the connection closes and shutdown
        self._gate_names: dict[int, str] = {}

    # ---------------------------------------------------------------------------------------- set-up

    def setup(self) -> None:
        """Tick/lot sizes (config, else REST instruments-info), the venue adapter and the paper exchange."""
        from mmlab.sim.engine import SymbolSpec

        if self.paper is not None:
            return
        self.instruments = inst = self._instruments(self._given_instruments)
        self.adapter = make_adapter(self.venue, self.symbols, inst, book_depth=self.lc.book_depth)
        self.specs = [SymbolSpec(s, float(inst[s]["tick_size"]), float(inst[s]["lot_size"]),
                                 (inst[s].get("contract") or {}).get("type", "linear"),
                                 float((inst[s].get("contract") or {}).get("contract_size", 1.0)))
                      for s in self.symbols]
        from live.scoring import LiveScoring

        self.scoring = LiveScoring(self)  # feature collectors; with [model] id the scored pipeline strategy
        self.paper = PaperExchange(self.cfg, self.specs, self.strategy)
        self.paper.warm()
        self.paper.hold(self.defer_outputs)
        self._tick_arr = np.array([sp.tick_size for sp in self.specs], dtype=np.float64)
        self._sym_arr = np.array([sp.symbol for sp in self.specs], dtype=object)
        self.adapter.warm(self.buffer)
        self.scoring.warm()
        m = self.metrics
        # Per-symbol metric children, looked up once (a labels() call per tick costs more than the tick).
        self._ms = [{"halted": m.halted.labels(s), "age": m.md_age.labels(s), "hit": m.md_hit.labels(s),
                     "miss": m.md_miss.labels(s), "ratio": m.md_hit_ratio.labels(s), "dec": m.decisions.labels(s),
                     "warm": m.warmup_skip.labels(s), "mid": m.sym_mid.labels(s), "spread": m.sym_spread.labels(s),
                     "imb": m.sym_imbalance.labels(s), "pos": m.position.labels(s), "pnl": m.pnl.labels(s),
                     "fills": m.fills.labels("paper", s), "stale": m.pricing_on_stale.labels("guard_block")}
                    for s in self.symbols]
        self._sym_vals = [[None] * 6 for _ in self.symbols]  # last published gauge values (_publish_symbol)
        self._count_m = (("deadline_miss", m.deadline_miss), ("backpressure", m.backpressure.labels(self.venue)),
                         ("orders_sent", m.trades_opened.labels("paper")))
        self._pub_backlog = None
        self._hits = np.zeros((len(self.symbols), 2), dtype=np.int64)
        self._stage = [m.stage.labels(k) for k in ("decode", "sim_step", "output")]
        self._frame_m = [m.frames.labels(f.name.lower()) for f in Frame]
        # Plain-integer aggregates of the hot path, published by publish_metrics().
        n = len(self.symbols)
        self._frame_n = [0] * len(Frame)
        self._frame_pub = [0] * len(Frame)
        self._sym_n = [[0] * len(_SYM_COUNTERS) for _ in range(n)]  # per symbol, as _SYM_COUNTERS
        self._sym_pub = [[0] * len(_SYM_COUNTERS) for _ in range(n)]
        from live.failsafe import FailSafeMonitor
        from live.rollout import LiveRollout

        self.failsafe = FailSafeMonitor(self) if self.lc.failsafe else None
        self.rollout = LiveRollout.maybe(self)
        self._sym_last: list[tuple | None] = [None] * n  # mid, spread_ticks, imbalance (None: one-sided book)
        self._sym_acct: list[tuple | None] = [None] * n  # position, pnl (None when not finite)
        self._lat_pending: list[int] = []  # frame -> actions emitted ns since the last publication
        self._steps_pending: list[int] = []  # decode (or -1), sim step, output, total: 4 ns values per step
        self._pub_counts = collections.Counter()  # counts already added to their prometheus counters
        self._published_ns = 0
        self._pub_gen = None  # the publication under way (_publication), one part per step

    def _instruments(self, given: dict | None) -> dict:
        lc = self.lc
        inst = {s: dict(v) for s, v in (given or {}).items()}
        need = [s for s in self.symbols if s not in inst]
        if need and all(s in lc.tick_sizes and s in lc.lot_sizes for s in need):
            for s in need:
                inst[s] = {"tick_size": float(lc.tick_sizes[s]), "lot_size": float(lc.lot_sizes[s])}
            need = []
        if need:
            if self.venue.startswith("bybit"):
                from live.venues.bybit import fetch_instruments

                got, bodies = fetch_instruments(self.venue, need, lc.rest_url, timeout_s=lc.connect_timeout_s)
            else:
                from live.venues.binance import fetch_instruments

                got, bodies = fetch_instruments(self.venue, need, lc.rest_url, timeout_s=lc.connect_timeout_s)
            inst.update(got)
            self.inst_bodies = bodies
        for s in self.symbols:  # config overrides win
            if s in lc.tick_sizes:
                inst[s]["tick_size"] = float(lc.tick_sizes[s])
            if s in lc.lot_sizes:
                inst[s]["lot_size"] = float(lc.lot_sizes[s])
        return inst

    def now_ns(self) -> int:
        """Local receive clock: strictly increasing, so frames never share a ts_local."""
        t = self.clock_ns()
        if t <= self.last_ts:
            t = self.last_ts + 1
        self.last_ts = t
        return t

    # ------------------------------------------------------------------------------------------ tasks

    async def _reader(self) -> None:
        import websockets

        lc = self.lc
        url = self.adapter.ws_url(lc.ws_url)
        delay = lc.backoff_initial_s
        first = True
        while not self.stopping:
            try:
                async with websockets.connect(url, open_timeout=lc.connect_timeout_s, ping_interval=None,
                                              max_size=None, compression=None, close_timeout=CLOSE_TIMEOUT_S,
                                              max_queue=WS_MAX_QUEUE) as ws:
                    self.ws = ws
                    if not first:
                        self.counts["reconnects"] += 1
                        self.metrics.reconnects.inc()
                        self._invalidate_all("reconnect")
                    first = False
                    self.adapter.on_connect()
                    for msg in self.adapter.subscribe_messages():
                        await ws.send(msg)
                    if hasattr(self.adapter, "snapshot_url"):
                        # REST-synced books (Binance): snapshots once some diffs are buffered.
                        for i in range(len(self.symbols)):
                            self._resync(i, delay_s=0.25)
                    delay = lc.backoff_initial_s
                    await self._read_frames(ws)
            except (TimeoutError, OSError, Exception) as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                self.counts["connect_errors"] += 1
                self.server_log.append(f"{type(exc).__name__}: {exc}")
            finally:
                self.ws = None
            if self.stopping:
                break
            self.counts["disconnects"] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2.0, lc.backoff_max_s)

    async def _read_frames(self, ws) -> None:
        """Receive the frames of one connection: stamp ("frame received", as the client hands the frame over),
        record and queue each, and step the queue when :func:`step_due` says so (the processor steps what is left
        queued when the connection ends). A frame of :attr:`split_frame_bytes` or more (a book snapshot) is not
        batched with the frames queued before it: they are stepped first, up to its receive time."""
        from websockets.exceptions import ConnectionClosedOK

        budget_ns = int(self.lc.latency_budget_us * 1000)
        split_bytes = self.split_frame_bytes if self.split_frame_bytes > 0 else 1 << 62
        queue = self.queue
        oldest_pc = 0  # perf_counter_ns when the oldest frame of the queue was received
        try:
            while True:
                try:
                    raw = await ws.recv(decode=False)  # bytes as sent (no UTF-8 decode and re-encode)
                except ConnectionClosedOK:
                    return
                ts = self.now_ns()
                pc = time.perf_counter_ns()
                if queue and len(raw) >= split_bytes:
                    # Step the frames before this large one first (horizon: its receive time, so the loop runs
                    # exactly what it would have run before this frame's events in a joint step).
                    self.process_pending(min(self.clock_ns() - int(self.lc.horizon_margin_ms * NS_PER_MS), ts))
                if not queue:
                    oldest_pc = pc
                self.recorder.write(ts, raw)
                self._enqueue(ts, raw, wake=False)
                if self.stopping:
                    return
                ahead = ws_read_ahead(ws)
                if not step_due(ahead, pc - oldest_pc, budget_ns):
                    continue  # the next frame is already here: it joins this step
                self.process_pending(self.clock_ns() - int(self.lc.horizon_margin_ms * NS_PER_MS))
                if ahead:
                    await asyncio.sleep(0)  # between the batches of a backlog: timers, keepalive, the socket
                elif self.drain_when_idle and (self._held_rows or
                                               self.recorder.frames - self._rec_written >= RECORD_IDLE_LINES):
                    await asyncio.sleep(0)  # let the socket be read: write the held rows only if nothing came
                    if not queue and not ws_read_ahead(ws):
                        self._write_idle()
        finally:
            if queue:
                self.wake.set()

    def _enqueue(self, ts: int, raw: bytes, *, wake: bool = True) -> None:
        """Queue a received frame (``wake``: the processor steps it; the reader steps its own frames)."""
        lc = self.lc
        if len(self.queue) >= lc.queue_max:
            self.queue[-1].append((ts, raw))
            self.counts["backpressure"] += 1
        else:
            self.queue.append([(ts, raw)])
        self.backlog += 1
        if self.backlog > lc.max_backlog_frames:
            # Too far behind: drop the backlog and re-sync every book from fresh snapshots.
            self.counts["backlog_dropped_frames"] += self.backlog
            self.queue.clear()
            self.backlog = 0
            self._invalidate_all("backlog")
            self._resync_all()
        if wake:
            self.wake.set()

    async def _keepalive(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.lc.ping_interval_s)
            ws = self.ws
            msg = self.adapter.ping_message
            if ws is not None and msg:
                try:
                    await ws.send(msg)
                    self.counts["pings"] += 1
                    self.metrics.pings.inc()
                except Exception as exc:  # noqa: BLE001 - the reader notices the broken connection
                    self.server_log.append(f"ping failed: {exc}")

    def _invalidate_all(self, reason: str) -> None:
        now = self.clock_ns()
        for i in range(len(self.symbols)):
            if self.adapter.book_valid[i]:
                self.metrics.md_invalidate.labels(reason).inc()
            self.adapter.book_valid[i] = False
            if self.invalid_since[i] < 0:
                self.invalid_since[i] = now
        self._refresh_pending = True

    def _resync_all(self) -> None:
        for i in range(len(self.symbols)):
            self._resync(i)

    def _resync(self, i: int, delay_s: float = 0.0) -> None:
        """Re-sync symbol i's book: a REST snapshot (Binance) or a resubscription (Bybit answers with a snapshot)."""
        if not hasattr(self.adapter, "snapshot_url"):
            self._send_later(self.adapter.resubscribe_messages(i))
            return
        url = self.adapter.snapshot_url(i, self.lc.rest_url)

        def get() -> bytes:
            import urllib.request

            with urllib.request.urlopen(url, timeout=self.lc.connect_timeout_s) as r:
                return r.read()

        async def fetch():
            if delay_s:
                await asyncio.sleep(delay_s)
            try:
                body = await asyncio.to_thread(get)
            except OSError as exc:
                self.counts["snapshot_errors"] += 1
                self.server_log.append(f"snapshot {url}: {exc}")
                return
            ts = self.now_ns()
            self.adapter.expect_snapshot(ts, i)
            self.recorder.write(ts, body)
            self._enqueue(ts, body)

        asyncio.get_running_loop().create_task(fetch())

    def _send_later(self, msgs: list[str]) -> None:
        ws = self.ws
        if ws is None:
            return  # the next connection subscribes afresh

        async def send():
            try:
                for m in msgs:
                    await ws.send(m)
            except Exception:  # noqa: BLE001
                pass

        asyncio.get_running_loop().create_task(send())

    async def _processor(self, deadline_ns: int | None) -> None:
        step_s = self.lc.step_ms / 1000.0
        while not self.stopping:
            if deadline_ns is not None and self.clock_ns() >= deadline_ns:
                break
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=step_s)
            except TimeoutError:
                pass
            self.wake.clear()
            self.process_pending(self.clock_ns() - int(self.lc.horizon_margin_ms * NS_PER_MS))
            if not self.queue and self.drain_when_idle:
                self._write_idle()  # idle: no frame waits for the writes
            if self.failsafe is not None or self.rollout is not None:
                self._operator_checks()

    def _operator_checks(self) -> None:
        """Periodic (not per frame): fail-safe health checks and the rollout's A/B intervals and guard rails."""
        if self.failsafe is not None and self.clock_ns() >= self.failsafe.next_ns:
            self.failsafe.check(self.clock_ns())
        if self.rollout is not None and self.paper.started:
            self.rollout.check(int(self.paper.horizon))

    # ------------------------------------------------------------------------------------------ steps

    def process_pending(self, horizon_ns: int, *, final_gate: int | None = None) -> None:
        """Normalize queued frames, set gates, step the paper exchange to ``horizon_ns`` (actions emitted), then
        record the step (logs and decisions.parquet in batches with :attr:`defer_outputs`)."""
        t0 = time.perf_counter_ns()
        # No cyclic garbage collection until the actions are emitted (a collection takes 0.1-2 ms; the objects
        # allocated meanwhile are collected right after, in the recording part).
        gc_on = gc.isenabled()
        if gc_on:
            gc.disable()
        try:
            queue = self.queue
            # The whole backlog goes to the adapter in one call (one compiled pass over the frames' bytes).
            if len(queue) == 1:
                frames = queue.popleft()
            else:
                frames = [f for entry in queue for f in entry]
                queue.clear()
            if frames:
                self._on_frames(frames)
            self.backlog = 0
            t1 = time.perf_counter_ns()
            self.scoring.on_events(self.buffer)
            self.paper.add(self.buffer)
            if final_gate is not None or self.paper.due(horizon_ns):  # gates matter only to a loop call
                self._set_gates(final_gate)
            out = self.paper.step(None, horizon_ns) if self.scoring.model is None else self.scoring.step(horizon_ns)
            if self.rollout is not None or self.real is not None:
                self._on_actions(out)
            # Actions emitted: the frames' latency ends here; what follows only records the step.
            t2 = self.emitted_pc_ns = time.perf_counter_ns()
        finally:
            if gc_on:
                gc.enable()
        if frames:
            done = self.clock_ns()
            lats = [done - f[0] for f in frames]
            self.frame_lat_ns.extend(lats)
            self._lat_pending.extend(lats)
        self._note_outputs(out)
        rec = self.recorder
        if not self.defer_outputs or rec.frames - self._rec_written >= RECORD_LINES:
            self._write_recording()
        if self._held_rows and (self._held_rows >= self.drain_rows
                                or t2 - self._held_since_ns >= self.drain_after_ns):
            self.drain_outputs()
        t3 = time.perf_counter_ns()
        self._steps_pending.extend((t1 - t0 if frames else -1, t2 - t1, t3 - t2, t3 - t0))
        self.step_ns.append(t3 - t0)
        if (t3 - t0) > self.lc.step_ms * NS_PER_MS:
            self.counts["deadline_miss"] += 1
        if self._pub_gen is not None or t3 - self._published_ns >= METRICS_PUBLISH_NS:
            self._publish_part()  # the next part of the publication under way, or the first of a new one

    def publish_metrics(self) -> None:
        """Add the hot path's plain-integer counts and latencies to the prometheus metrics, every part at once
        (at shutdown; during the session :meth:`process_pending` runs one part of :meth:`_publication` per step,
        every ``METRICS_PUBLISH_NS``: frames and ticks make no metrics call)."""
        if self._pub_gen is not None:
            for _ in self._pub_gen:  # (the publication under way first)
                pass
        self._pub_gen = None
        for _ in self._publication():
            pass

    def _publish_part(self) -> None:
        """The next part of the publication under way, or the first part of a new one."""
        if self._pub_gen is None:
            self._pub_gen = self._publication()
        if next(self._pub_gen, None) is None:
            self._pub_gen = None

    def _publication(self):
        """One publication as a generator, one part per ``next()`` (each costs tens of us, so no step is held up
        by all of them): the held outputs written, the runner's counters, the latency histograms in chunks of
        :data:`HIST_CHUNK` values, each symbol's counters and gauges (its collector gauges included), the
        model's metrics."""
        self.drain_outputs()  # (the counters of the held rows come with them)
        self._write_recording()
        yield True
        self._publish_counts()
        yield True
        m = self.metrics
        lat, self._lat_pending = self._lat_pending, []
        for k in range(0, len(lat), HIST_CHUNK):
            observe_many(m.frame_latency, np.array(lat[k:k + HIST_CHUNK], dtype=np.float64) / 1e9)
            yield True
        steps, self._steps_pending = self._steps_pending, []
        for k in range(0, len(steps), 4 * HIST_CHUNK):
            st = np.array(steps[k:k + 4 * HIST_CHUNK], dtype=np.float64).reshape(-1, 4) / 1e9
            observe_many(self._stage[0], st[st[:, 0] >= 0, 0])
            observe_many(self._stage[1], st[:, 1])
            observe_many(self._stage[2], st[:, 2])
            observe_many(m.tick_total, st[:, 3])
            yield True
        for i in range(len(self.symbols)):
            self._publish_symbol(i)
            yield True
        self.scoring.publish_model(m)
        self._published_ns = time.perf_counter_ns()

    def _publish_counts(self) -> None:
        """Frames by kind, the runner's counters, the queue depth and the latency histograms."""
        m = self.metrics
        c = self.counts
        for code, n in enumerate(self._frame_n):
            d = n - self._frame_pub[code]
            if d:
                self._frame_m[code].inc(d)
                c[_FRAME_NAMES[code]] += d
                self._frame_pub[code] = n
        pub = self._pub_counts
        for key, metric in self._count_m:
            d = c[key] - pub[key]
            if d:
                metric.inc(d)
                pub[key] = c[key]
        if self.backlog != self._pub_backlog:
            m.queue_depth.set(self.backlog)
            self._pub_backlog = self.backlog

    def _publish_symbol(self, i: int) -> None:
        """Symbol ``i``: its decision-tick counters, hit ratio, book and account gauges, data age and collector
        gauges (metric children resolved at set-up; gauges set only when their value changed)."""
        ms = self._ms[i]
        cur, done = self._sym_n[i], self._sym_pub[i]
        for k, name in enumerate(_SYM_COUNTERS):
            d = cur[k] - done[k]
            if d:
                ms[name].inc(d)
                done[k] = cur[k]
        vals = self._sym_vals[i]  # last published gauge values: ratio, mid, spread, imb, pos, pnl
        hits, misses = self._hits[i].tolist()
        new = [hits / (hits + misses) if hits + misses else None]
        new.extend(self._sym_last[i] if self._sym_last[i] is not None else (None, None, None))
        new.extend(self._sym_acct[i] if self._sym_acct[i] is not None else (None, None))
        for j, key in enumerate(("ratio", "mid", "spread", "imb", "pos", "pnl")):
            v = new[j]
            # (the spread gauge is shared with the collector's mm_symbol_spread_ticks: set every time, as before)
            if v is not None and (v != vals[j] or j == 2):
                ms[key].set(v)
                vals[j] = v
        last = int(self.adapter.last_data_ns[i])
        if last:
            ms["age"].set((self.clock_ns() - last) / NS_PER_MS)
        self.scoring.publish_symbol(self.metrics, i)

    def _on_frames(self, frames: list) -> None:
        """Normalize (ts, raw) frames into the event buffer and count them; a gap re-syncs its symbol, and the
        first market frame on a valid book after an invalidation observes the refresh time."""
        codes, sids, valid = self.adapter.on_frames(frames, self.buffer)
        counts = self._frame_n
        if len(codes) < 8:
            for code in codes:
                counts[code] += 1
        else:
            for code in range(len(counts)):
                k = codes.count(code)
                if k:
                    counts[code] += k
        inv = self.invalid_since
        if _GAP not in codes and not self._refresh_pending:
            return
        for j, code in enumerate(codes):
            sid = sids[j]
            if code == _GAP:
                ts = frames[j][0]
                sym = self.symbols[sid]
                self.counts["gaps"] += 1
                self.metrics.gaps.labels(sym).inc()
                self.metrics.md_invalidate.labels("ws_gap").inc()
                if inv[sid] < 0:
                    inv[sid] = ts
                self._resync(sid)
            elif code == _MARKET and sid >= 0 and inv[sid] >= 0 and valid[j]:
                self.metrics.md_refresh.observe(max(frames[j][0] - int(inv[sid]), 0) / 1e9)
                inv[sid] = -1
        self._refresh_pending = bool((inv >= 0).any())

    def _set_gates(self, final_gate: int | None) -> None:
        lc = self.lc
        now = self.clock_ns()
        kill = bool(lc.kill_switch_file) and os.path.exists(lc.kill_switch_file)
        # With the fail-safe mode a real-mode halt routes to paper instead of stopping the strategy.
        kill = kill or (self.real is not None and self.real.halted is not None and self.failsafe is None)
        warm = now - self.t_start_ns < lc.warmup_s * NS_PER_S
        stale_ns = lc.stale_ms * NS_PER_MS
        valid = self.adapter.book_valid
        last = self.adapter.last_data_ns
        for i in range(len(self.symbols)):
            if final_gate is not None:
                g = final_gate
            elif kill:
                g = 4  # LiveGate.KILL_SWITCH
            elif warm:
                g = 1  # WARMUP
            elif not valid[i]:
                g = 3  # BOOK_INVALID
            elif now - int(last[i]) > stale_ns:
                g = 2  # STALE
            else:
                g = 0  # OPEN
            prev = int(self.gate_now[i])
            if g != prev:
                if g in (LiveGate.STALE, LiveGate.KILL_SWITCH, LiveGate.BOOK_INVALID) and self.paper.started:
                    reason = LiveGate(g).name.lower()
                    self.metrics.fail_safe.labels(reason).inc()
                    self.counts[f"halt_{reason}"] += 1
                self.gate_now[i] = g
                self.paper.set_gate(i, g)
                self._ms[i]["halted"].set(g)

    def _on_actions(self, out: dict) -> None:
        """The step's decisions to the real venue (real mode) and its rows to the rollout: the part of a step's
        outputs that must be done before its actions count as emitted."""
        ro = self.rollout
        if ro is not None and (out["states"] or out["fills"] or out["oev"]):
            ro.on_step(out, self.step_ns[-1] if self.step_ns else 0)
        if self.real is not None and (self.failsafe is None or not self.failsafe.fs.active):
            self.real.on_step(out if ro is None else ro.real_out(out))

    def _note_outputs(self, out: dict) -> None:
        """After the actions are emitted: a step's rows into the feature collectors (the book as the step left
        it), and, with :attr:`defer_outputs`, counted for the next :meth:`drain_outputs`; else written now."""
        self.scoring.on_output(out)
        if not self.defer_outputs:
            self._write_rows(out)
            return
        if not (out["states"] or out["fills"] or out["oev"] or out["decisions"]):
            return
        if not self._held_rows:
            self._held_since_ns = time.perf_counter_ns()
        self._held_rows += sum(len(x) for k in ("states", "fills", "oev") for x in out[k])
        nd = sum(len(x) for x in out["decisions"])
        if nd:
            self._held_dec_steps.append(nd)

    def _write_recording(self) -> None:
        self.recorder.write_pending()
        self._rec_written = self.recorder.frames

    def _write_idle(self) -> None:
        """No frame waits: write the held output rows (once the oldest waited :attr:`drain_idle_after_ns`) and
        hand the received frames to the recording's writer."""
        if self._held_rows and time.perf_counter_ns() - self._held_since_ns >= self.drain_idle_after_ns:
            self.drain_outputs()
        if self.recorder.frames > self._rec_written:
            self._write_recording()

    def drain_outputs(self, *, force: bool = False) -> None:
        """Write every held output row (defer_outputs): ticks/fills/orders JSON lines, decisions.parquet row
        groups (cut where the per-step writes would have cut them), counters and gauges' values. ``force`` also
        takes rows a failed step left in the loop's buffers."""
        if self.paper is None or not (self._held_rows or self._held_dec_steps or force):
            return
        out = self.paper.take_outputs()
        steps = self._held_dec_steps
        self._held_dec_steps = []
        self._held_rows = 0
        self._write_rows(out, dec_steps=steps)

    def _write_rows(self, out: dict, dec_steps: list[int] | None = None) -> None:
        """Log rows (in order) and decision rows of one step, or of several (``dec_steps``: decision rows per
        step, in order) in one call; counters and the last values the gauges publish."""
        if out["decisions"]:
            self._add_decisions(out, dec_steps)
        for key, write in (("states", self._write_ticks), ("fills", self._write_fills), ("oev", self._write_orders)):
            if out[key]:
                write(np.concatenate(out[key]) if len(out[key]) > 1 else out[key][0])

    def _write_ticks(self, r: np.ndarray) -> None:
        """Decision-tick state rows: ticks.jsonl lines, the per-symbol counters and gauge values."""
        n = len(self.specs)
        s = r["symbol_id"]
        tick = self._tick_arr[s]
        reason = r["reason"]
        gates = [self._gate_names.get(x) or self._gate_name(x) for x in reason.tolist()]
        closed = np.array([g != "open" for g in gates], dtype=bool)
        warm = np.array([g == "warmup" for g in gates], dtype=bool)
        stale = np.array([g == "stale" for g in gates], dtype=bool)
        dec = np.bincount(s, minlength=n)
        miss = np.bincount(s[closed], minlength=n)
        n_warm = np.bincount(s[warm], minlength=n)
        n_stale = np.bincount(s[stale], minlength=n)
        for i in np.flatnonzero(dec).tolist():
            sn = self._sym_n[i]
            sn[_DEC] += int(dec[i])
            sn[_MISS] += int(miss[i])
            sn[_HIT] += int(dec[i] - miss[i])
            sn[_WARM] += int(n_warm[i])
            sn[_STALE] += int(n_stale[i])
            self._hits[i, 0] += int(dec[i] - miss[i])
            self._hits[i, 1] += int(miss[i])
        self.counts["warmup_skip"] += int(warm.sum())
        bb, ba = r["best_bid_ticks"], r["best_ask_ticks"]
        ok = (bb > -(2**61)) & (ba < 2**61)
        mid = r["mid_ticks"] * tick
        bid_q, ask_q = r["bid_qty"], r["ask_qty"]
        pnl = r["pnl"]
        for i in np.flatnonzero(dec).tolist():  # the gauges' values: the symbol's last row (with a book)
            rows_i = np.flatnonzero(s == i)
            last = int(rows_i[-1])
            self._sym_acct[i] = (float(r["position"][last]), _fnum(pnl[last]))
            with_book = rows_i[ok[rows_i]]
            if len(with_book):
                k = int(with_book[-1])
                q = float(bid_q[k]) + float(ask_q[k])
                self._sym_last[i] = (float(mid[k]), int(ba[k]) - int(bb[k]),
                                     (float(bid_q[k]) - float(ask_q[k])) / q if q > 0 else 0.0)
        qb, qa = r["quote_bid_ticks"], r["quote_ask_ticks"]
        cols = (r["ts_local"].tolist(), self._sym_arr[s].tolist(), _or_none(bb * tick, ok), _or_none(ba * tick, ok),
                _or_none(mid, np.isfinite(mid)), _or_none(qb * tick, qb >= 0), _or_none(qa * tick, qa >= 0),
                r["n_quotes_bid"].tolist(), r["n_quotes_ask"].tolist(), r["n_actions"].tolist(),
                r["n_working"].tolist(), r["position"].tolist(), r["fees"].tolist(),
                _or_none(pnl, np.isfinite(pnl)), reason.tolist(), gates)
        self._write_log("ticks", _json_lines(_TICK_KEYS, cols))

    def _write_fills(self, f: np.ndarray) -> None:
        """Paper fills: fills.jsonl lines and counters."""
        ro, ticks, syms, n = self.rollout, self._tick_arr, self._sym_arr, len(self.specs)
        s = f["symbol_id"]
        for i, k in enumerate(np.bincount(s, minlength=n).tolist()):
            self._sym_n[i][_FILLS] += k
        self.counts["fills"] += len(f)
        qa = f["queue_ahead_qty"]
        seq = f["order_seq"].tolist()
        route = (["paper"] * len(f) if ro is None else
                 [ro.route_name(i, q) for i, q in zip(s.tolist(), seq)])
        cols = (f["ts_exch"].tolist(), f["ts_local"].tolist(), syms[s].tolist(), f["order_id"].tolist(), seq,
                f["side"].tolist(), (f["price_ticks"] * ticks[s]).tolist(), f["price_ticks"].tolist(),
                f["qty"].tolist(), f["maker"].tolist(), f["fee"].tolist(), _or_none(qa, np.isfinite(qa)),
                f["position_after"].tolist(), route)
        self._write_log("fills", _json_lines(_FILL_KEYS, cols))

    def _write_orders(self, e: np.ndarray) -> None:
        """Order events: orders.jsonl lines and the orders-sent count (paper-routed SENT events)."""
        ro, ticks, syms = self.rollout, self._tick_arr, self._sym_arr
        s = e["symbol_id"]
        kind = e["kind"]
        sent = kind == _SENT
        seq = e["order_seq"].tolist()
        if ro is None:
            self.counts["orders_sent"] += int(sent.sum())
        else:
            self.counts["orders_sent"] += sum(1 for j in np.flatnonzero(sent).tolist()
                                              if ro.route_name(int(s[j]), seq[j]) == "paper")
        cols = (e["ts_local"].tolist(), e["ts_exch"].tolist(), syms[s].tolist(), e["order_id"].tolist(), seq,
                [_OEV_NAMES[_OEV_KINDS[k]] for k in kind.tolist()], e["side"].tolist(),
                (e["price_ticks"] * ticks[s]).tolist(), e["qty"].tolist(), e["leaves_qty"].tolist(),
                e["reason"].tolist())
        self._write_log("orders", _json_lines(_ORDER_KEYS, cols))

    def _write_log(self, key: str, data: bytes) -> None:
        """JSON lines to ``<key>.jsonl``: on the writer thread with deferred outputs, else at once."""
        f = self._logs[key]
        if self.defer_outputs:
            self.writer.submit(lambda: f.write(data), f"writing {len(data)} bytes to {key}.jsonl")
        else:
            f.write(data)

    def _close_files(self) -> None:
        """The logs closed and the writer thread ended (raises a failed write's error); closes what is still
        open after a failure."""
        try:
            for key, f in self._logs.items():
                self.writer.submit(f.close, f"closing {key}.jsonl")
            self.writer.close()
        finally:
            self.writer.close()
            for f in self._logs.values():
                if not f.closed:
                    f.close()

    def _gate_name(self, reason: int) -> str:
        name = self._gate_names[reason] = gate_name(reason)
        return name

    def _add_decisions(self, out: dict, dec_steps: list[int] | None) -> None:
        """Decision rows (and their quotes/actions) to the parts of decisions.parquet; a row group is written
        once a step brings the held rows to :attr:`decisions_chunk_rows` (``dec_steps``: rows per step)."""
        parts = {k: out[k] for k in ("decisions", "dec_quotes", "dec_actions")}
        total = sum(len(x) for x in parts["decisions"])
        if dec_steps is None or sum(dec_steps) != total:
            dec_steps = [total]
        if self._dec_rows + total < self.decisions_chunk_rows:  # (the usual case: no row group in these rows)
            for k, v in parts.items():
                self._dec_parts[k].extend(v)
            self._dec_rows += total
            return
        dec, quotes, acts = (np.concatenate(v) if v else np.zeros(0, dtype=_DEC_DTYPES[k])
                             for k, v in parts.items())
        q_end = np.concatenate([[0], np.cumsum(dec["n_quotes"])])
        a_end = np.concatenate([[0], np.cumsum(dec["n_actions"])])
        i0 = i = 0
        for nd in dec_steps:
            i += nd
            self._dec_rows += nd
            if self._dec_rows >= self.decisions_chunk_rows:
                self._dec_parts["decisions"].append(dec[i0:i])
                self._dec_parts["dec_quotes"].append(quotes[q_end[i0]:q_end[i]])
                self._dec_parts["dec_actions"].append(acts[a_end[i0]:a_end[i]])
                self._flush_decisions()
                i0 = i
        if i0 < len(dec):
            self._dec_parts["decisions"].append(dec[i0:])
            self._dec_parts["dec_quotes"].append(quotes[q_end[i0]:])
            self._dec_parts["dec_actions"].append(acts[a_end[i0]:])

    # ------------------------------------------------------------------------------------------ session

    async def run(self, duration_s: float | None = None) -> dict:
        """Run until ``duration_s`` (default ``live.duration_s``; 0 = until :meth:`stop` or SIGINT/SIGTERM)."""
        duration_s = self.lc.duration_s if duration_s is None else duration_s
        # Blocking REST and kernel loading off the event loop (a local venue may share it).
        await asyncio.to_thread(self.setup)
        with session_gc():
            return await self._run(duration_s)

    async def _run(self, duration_s: float) -> dict:
        if self.real is not None:
            await self.real.start(self)
        self.t_start_ns = self.clock_ns()
        t_wall = time.perf_counter()
        for body in self.inst_bodies:
            self.recorder.write(self.now_ns(), body)
        deadline = self.t_start_ns + int(duration_s * NS_PER_S) if duration_s else None
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        reader = asyncio.create_task(self._reader())
        keep = asyncio.create_task(self._keepalive())
        try:
            await self._processor(deadline)
            self.feed_s = time.perf_counter() - t_wall
        except BaseException:
            self.save_outputs()
            raise
        finally:
            self.stopping = True
            for t in (reader, keep):
                t.cancel()
            for t in (reader, keep):
                try:
                    await t
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
            for sig in installed:
                loop.remove_signal_handler(sig)
        summary = self.shutdown(time.perf_counter() - t_wall)
        if self.real is not None:
            summary["mode"] = "real"
            summary["real"] = await self.real.close()
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        return summary

    def stop(self) -> None:
        """Ask the session to end (graceful: working orders are canceled, logs flushed)."""
        self.stopping = True
        self.wake.set()

    def shutdown(self, wall_s: float) -> dict:
        """Process what is queued, cancel every working order, write decisions.parquet and summary.json."""
        now = self.clock_ns()
        self.process_pending(now - int(self.lc.horizon_margin_ms * NS_PER_MS))
        working_before = sum(self.paper.working_orders(i) for i in range(len(self.symbols)))
        sp = self.paper.a.sp[0]
        # Simulated time only: one decision tick (cancel all) plus the cancels' round trip.
        lat = int(sp["entry_latency_ns"]) + int(sp["cancel_latency_ns"]) + int(sp["response_latency_ns"])
        h = max(int(self.paper.horizon), now) + 2 * int(sp["interval_ns"]) + 2 * lat + NS_PER_MS
        if self.paper.started:
            self.process_pending(h, final_gate=int(LiveGate.SHUTDOWN))
        working_after = sum(self.paper.working_orders(i) for i in range(len(self.symbols)))
        self.drain_outputs()
        self.publish_metrics()
        self.recorder.close()
        self._close_files()
        self._write_decisions()
        summary = self._summary(wall_s, working_before, working_after)
        summary.update(self.scoring.summary())
        if self.failsafe is not None:
            summary["failsafe"] = self.failsafe.fs.summary(self.clock_ns())
        if self.rollout is not None:
            summary["rollout"] = self.rollout.summary()
            self.rollout.close()
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        return summary

    def save_outputs(self) -> None:
        """A failed session: write every held output row, flush the logs and the recording, and close
        decisions.parquet with the rows so far (each part on its own, so one failure does not stop the rest)."""
        def flush_logs():
            for key, f in self._logs.items():
                self.writer.submit(f.flush, f"flushing {key}.jsonl")
            self.writer.wait()

        for part in (lambda: self.drain_outputs(force=True), flush_logs, self.recorder.flush,
                     lambda: self._flush_decisions(final=True), self.writer.close):
            try:
                part()
            except Exception as exc:  # noqa: BLE001 - the session's own error is the one raised
                self.server_log.append(f"saving outputs after a failure: {type(exc).__name__}: {exc}")

    def _flush_decisions(self, final: bool = False) -> None:
        """Write the held decision rows to decisions.parquet (the backtest's columns,
        ``mmlab.sim.decisions.decisions_frame``) as one row group; ``final`` closes the file. A session that never
        filled a chunk writes the file once at the end."""
        from mmlab.sim import engine

        out = {k: np.concatenate(v) if v else np.zeros(0, dtype=_DEC_DTYPES[k]) for k, v in self._dec_parts.items()}
        self._dec_parts = {k: [] for k in _DEC_DTYPES}
        self._dec_rows = 0
        rows = out["decisions"]
        timing = np.zeros(len(rows), dtype=np.dtype([("tick_ns", rows.dtype["tick_ns"]),
                                                     ("stage_ns", rows.dtype["stage_ns"])]))
        timing["tick_ns"] = rows["tick_ns"]
        timing["stage_ns"] = rows["stage_ns"]
        self._dec_timings.append(timing)
        while sum(len(t) for t in self._dec_timings) - len(self._dec_timings[0]) >= STAGE_TIMING_ROWS:
            self._dec_timings.popleft()
        if not self._dec_started and final:
            raw = {"out": out, "reasons_packed": bool(getattr(self.strategy, "reasons_packed", False)),
                   "stage_names": tuple(getattr(self.strategy, "stage_names", ()))}
            frame, _ = engine.decision_outputs(self.specs, raw)
            frame.write_parquet(self.out / "decisions.parquet", statistics=True)
            return
        import pyarrow.parquet as pq

        if len(rows):
            raw = {"out": out, "reasons_packed": bool(getattr(self.strategy, "reasons_packed", False)),
                   "stage_names": tuple(getattr(self.strategy, "stage_names", ()))}
            table = engine.decision_outputs(self.specs, raw)[0].to_arrow()
            self._dec_started = True
            path = str(self.out / "decisions.parquet")

            def write_table():
                if self._dec_writer is None:
                    self._dec_writer = pq.ParquetWriter(path, table.schema)
                self._dec_writer.write_table(table.cast(self._dec_writer.schema))

            self._run_write(write_table, f"writing {len(table)} rows to decisions.parquet")
        if final and self._dec_started:
            self._run_write(lambda: self._dec_writer.close(), "closing decisions.parquet")
        if final:
            self.writer.close()  # (every write done; a failed one raised)

    def _run_write(self, fn, what: str) -> None:
        """A file write on the writer thread (deferred outputs) or at once."""
        if self.defer_outputs:
            self.writer.submit(fn, what)
        else:
            self.writer.wait()
            fn()

    def _write_decisions(self) -> None:
        """The last decision rows into decisions.parquet; the summary's stage latencies from the kept timings."""
        from mmlab.sim.decisions import stage_latency_summary

        self._flush_decisions(final=True)
        timings = np.concatenate(list(self._dec_timings))
        self.stage_latency = stage_latency_summary(timings, tuple(getattr(self.strategy, "stage_names", ())))

    def _summary(self, wall_s: float, working_before: int, working_after: int) -> dict:
        a = self.paper.a
        rs = a.rs[0]
        lat = np.array(self.frame_lat_ns, dtype=np.float64) / 1e3
        steps = np.array(self.step_ns, dtype=np.float64) / 1e3
        per_symbol = {}
        for i, sp in enumerate(self.specs):
            ss = a.ss[i]
            per_symbol[sp.symbol] = {"position_final": float(ss["exch_position"]), "fees": float(ss["exch_fees"]),
                                     "n_fills": int(ss["exch_n_fills"]), "volume_qty": float(ss["exch_volume"]),
                                     "book_valid": bool(self.adapter.book_valid[i]),
                                     "gate_final": LiveGate(int(self.gate_now[i])).name.lower()}
        c = self.counts
        return {
            "mode": "paper", "venue": self.venue, "symbols": self.symbols, "config_id": self.cfg.config_id,
            "strategy": self.cfg.strategy.name, "wall_s": wall_s, "feed_s": self.feed_s,
            "frames": int(sum(v for k, v in c.items() if k.startswith("frames_"))),
            "frames_by_kind": {k[len("frames_"):]: int(v) for k, v in sorted(c.items()) if k.startswith("frames_")},
            "events": int(self.paper.events), "events_bbo_skipped": int(self.paper.events_bbo_skipped),
            "late_exch_events": int(self.paper.late_exch_events),
            "n_decisions": int(rs["n_decisions"]), "n_orders": int(rs["n_orders"]),
            "n_requests": int(rs["n_requests"]), "n_fills": int(c["fills"]),
            "reconnects": int(c["reconnects"]), "connect_errors": int(c["connect_errors"]),
            "gaps": int(c["gaps"]), "pings": int(c["pings"]), "backpressure_total": int(c["backpressure"]),
            "backlog_dropped_frames": int(c["backlog_dropped_frames"]), "warmup_skip_total": int(c["warmup_skip"]),
            "halts": {k[len("halt_"):]: int(v) for k, v in c.items() if k.startswith("halt_")},
            "deadline_miss": int(c["deadline_miss"]),
            "working_orders_at_shutdown": int(working_before), "working_orders_after_cancel_all": int(working_after),
            "frame_to_step_us_p50": float(np.percentile(lat, 50)) if len(lat) else None,
            "frame_to_step_us_p99": float(np.percentile(lat, 99)) if len(lat) else None,
            "step_us_p50": float(np.percentile(steps, 50)) if len(steps) else None,
            "step_us_p99": float(np.percentile(steps, 99)) if len(steps) else None,
            "loop_s": self.paper.loop_s, "jit_s": self.paper.jit_s, "stage_latency_ns": self.stage_latency,
            "recording": [os.path.relpath(f, self.out) for f in self.recorder.files],
            "recorded_frames": int(self.recorder.frames), "sequence_gaps": list(self.adapter.gaps)[:100],
            "per_symbol": per_symbol,
        }


def run_live(cfg, *, out_dir=None, duration_s: float | None = None, metrics_port: int | None = None,
             real: bool = False, confirm_real: bool = False) -> dict:
    """Run a paper session for ``cfg`` (blocking); returns the summary. Serves /metrics when a port is set.

    ``real=True`` (with ``confirm_real=True``, the ``[live] real_max_*`` limits and keys in the environment) also
    sends the decision actions to the venue (:mod:`live.real.session`); otherwise it refuses with a ConfigError.
    """
    if real:
        from live.real.session import RealSession, check_real_mode

        creds, limits = check_real_mode(cfg, real=True, confirmed=confirm_real)
    runner = LiveRunner(cfg, out_dir=out_dir)
    if real:
        runner.real = RealSession(cfg, creds, limits, out_dir=runner.out)
    port = cfg.live.metrics_port if metrics_port is None else metrics_port
    server = runner.metrics.serve(port) if port else None
    try:
        return asyncio.run(runner.run(duration_s))
    finally:
        if server is not None:
            server.shutdown()
