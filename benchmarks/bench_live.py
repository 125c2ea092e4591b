"""Live runner speed: message -> decision latency and sustained messages per second.

Two measurements on the shared Bybit v5 recording (``../shared/data/real/bybit/BYBIT.jsonl.gz``, linear
BTCUSDT/ETHUSDT/SOLUSDT/DOGEUSDT, grid strategy, 100 ms ticks):

1. One core, no socket: each frame is stamped, normalized and the paper exchange is stepped up to the frame's
   own receive time (horizon margin 0), i.e. every decision tick the frame makes due is run before the next
   frame. Latency = stamp -> step done, per frame, wall clock and on-CPU (thread time: the wall figure less the
   time the OS ran other processes), for all frames and for the frames that ran a decision tick. Throughput:
   stepping after every frame, and after every 64 frames (a sustained feed: the runner normalizes whatever is
   queued in one call), wall and on-CPU. A paced run (the session clock advances 1 ms per frame) makes decision
   ticks come due and reports the latency of the frames that ran one. Baselines: in the same run, decoding the frame alone (``msgspec``),
   the floor any Python consumer pays; and the previous live path's figures (``PREVIOUS``), measured with this
   script on the same machine.
2. Loopback: a replay venue in another process sends the recording in a loop as fast as the socket takes it;
   the runner (margin 0) reports frames/s and its frame -> step-done latency. Baseline in the same run: a
   client that only receives the frames.

Goals (issue): p99 <= 200 us frame -> actions, >= 50 k messages/s on one core.

    python benchmarks/bench_live.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REC = (ROOT / ".." / "shared" / "data" / "real" / "bybit" / "BYBIT.jsonl.gz").resolve()
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"]
TICKS = {"BTCUSDT": 0.1, "ETHUSDT": 0.01, "SOLUSDT": 0.01, "DOGEUSDT": 0.00001}
LOTS = {"BTCUSDT": 0.001, "ETHUSDT": 0.01, "SOLUSDT": 0.1, "DOGEUSDT": 1.0}


def _cfg(extra: dict | None = None):
    from mmlab.config import load_config

    return load_config({"data": {"venue": "bybit-linear", "symbols": SYMBOLS},
                        "strategy": {"grid_num": 5, "half_spread_ticks": 2.0, "order_qty": 0.01, "max_position": 1.0},
                        "live": {"venue": "bybit-linear", "warmup_s": 0, "book_depth": 200, "horizon_margin_ms": 0.0,
                                 "stale_ms": 60000.0, "step_ms": 5.0, "tick_sizes": TICKS, "lot_sizes": LOTS,
                                 **(extra or {})}})


#: Figures of the previous live path (each frame normalized on its own: msgspec envelope + a compiled call per
#: book frame, the general decoder for trades; the runner's per-frame hooks), measured with this script on the
#: same loaded 2-core machine: the named baseline the new figures are printed against.
PREVIOUS = {"p50_us": 33.0, "p99_us": 160.0, "msgs_per_s": 37632.0, "msgs_per_s_step_each": 23575.0}


def one_core(rec, repeats: int = 4, batch: int = 64) -> dict:
    import msgspec

    from live.replay import _TS
    from live.runner import LiveRunner

    frames = [f for f in rec.frames if b'"orderbook.200.' in f[:40] or b'"publicTrade.' in f[:40]]

    def session(step_every: int, frame_gap_ns: int | None = None):
        wall, cpu, ticked, busy_s, cpu_s = [], [], [], 0.0, 0.0
        # With frame_gap_ns the session's clock advances by that much per frame (a feed of 1e9 / gap frames/s
        # in simulated time, so decision ticks come due); latencies are still measured on the wall clock.
        t_sim = [time.time_ns()]
        clock = (lambda: t_sim[0]) if frame_gap_ns else time.time_ns
        with tempfile.TemporaryDirectory() as d:
            r = LiveRunner(_cfg(), out_dir=d, clock_ns=clock)
            r.setup()
            r.t_start_ns = r.clock_ns()
            for j, raw in enumerate(frames):
                if frame_gap_ns:
                    t_sim[0] += frame_gap_ns
                ts = r.now_ns()
                now_ms = b"%d" % (ts // 1_000_000)
                # Exchange times moved to now, as the replay venue sends them.
                raw = _TS.sub(lambda m, now_ms=now_ms: b'"' + m.group(1) + b'":' + now_ms, raw)
                decisions = sum(n[0] for n in r._sym_n)  # decision rows emitted so far
                t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                r.queue.append([(ts, raw)])
                if (j + 1) % step_every == 0 or j == len(frames) - 1:
                    r.process_pending(ts + 1)
                c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
                busy_s += (t1 - t0) / 1e9
                cpu_s += (c1 - c0) / 1e9
                wall.append(t1 - t0)
                cpu.append(c1 - c0)
                ticked.append(sum(n[0] for n in r._sym_n) > decisions)
            r.shutdown(0.0)
        return np.array(wall) / 1e3, np.array(cpu) / 1e3, np.array(ticked), busy_s, cpu_s

    session(1)  # warm-up: kernels loaded, caches filled
    runs = [session(1) for _ in range(repeats)]
    wall = np.concatenate([x[0] for x in runs])
    cpu = np.concatenate([x[1] for x in runs])
    ticked = np.concatenate([x[2] for x in runs])
    per_frame_busy = sum(x[3] for x in runs)
    per_frame_cpu = sum(x[4] for x in runs)
    batched = [session(batch) for _ in range(repeats)]
    paced = [session(1, frame_gap_ns=1_000_000) for _ in range(repeats)]
    p_wall = np.concatenate([x[0] for x in paced])
    p_cpu = np.concatenate([x[1] for x in paced])
    p_tick = np.concatenate([x[2] for x in paced])
    busy = sum(x[3] for x in batched)
    busy_cpu = sum(x[4] for x in batched)
    dec = msgspec.json.Decoder()
    t0 = time.perf_counter()
    for _ in range(repeats):
        for raw in frames:
            dec.decode(raw)
    base = time.perf_counter() - t0
    n = repeats * len(frames)
    pct = lambda x, q: float(np.percentile(x, q)) if len(x) else float("nan")  # noqa: E731
    return {"frames": n, "msgs_per_s": n / busy, "msgs_per_s_step_each": n / per_frame_busy,
            "cpu_msgs_per_s": n / busy_cpu, "cpu_msgs_per_s_step_each": n / per_frame_cpu,
            "p50_us": pct(wall, 50), "p99_us": pct(wall, 99), "cpu_p50_us": pct(cpu, 50), "cpu_p99_us": pct(cpu, 99),
            "tick_frames": int(ticked.sum()), "tick_p50_us": pct(wall[ticked], 50),
            "tick_p99_us": pct(wall[ticked], 99), "tick_cpu_p99_us": pct(cpu[ticked], 99),
            "decode_only_msgs_per_s": n / base, "batch": batch,
            "paced_p50_us": pct(p_wall, 50), "paced_p99_us": pct(p_wall, 99), "paced_tick_frames": int(p_tick.sum()),
            "paced_tick_p50_us": pct(p_wall[p_tick], 50), "paced_tick_p99_us": pct(p_wall[p_tick], 99),
            "paced_tick_cpu_p99_us": pct(p_cpu[p_tick], 99)}


def _serve(port_q, stop_ev):
    from live.replay import ReplayVenue, load_cryptofeed

    async def main():
        v = await ReplayVenue(load_cryptofeed(REC), speed=0.0, loop=True).start()
        port_q.put(v.port)
        while not stop_ev.is_set():
            await asyncio.sleep(0.1)
        await v.close()

    asyncio.run(main())


async def _receive_only(url: str, seconds: float) -> float:
    import websockets

    async with websockets.connect(url, max_size=None, compression=None, ping_interval=None) as ws:
        args = [f"orderbook.200.{s}" for s in SYMBOLS] + [f"publicTrade.{s}" for s in SYMBOLS]
        await ws.send('{"op":"subscribe","args":%s}' % str(args).replace("'", '"'))
        n, t0 = 0, time.perf_counter()
        async for _ in ws:
            n += 1
            if time.perf_counter() - t0 > seconds:
                break
        return n / (time.perf_counter() - t0)


def loopback(seconds: float) -> dict:
    from live.runner import LiveRunner

    q, stop = mp.Queue(), mp.Event()
    out = {}
    for mode in ("receive_only", "runner"):
        proc = mp.Process(target=_serve, args=(q, stop), daemon=True)
        stop.clear()
        proc.start()
        port = q.get(timeout=60)
        url = f"ws://127.0.0.1:{port}/v5/public/linear"
        if mode == "receive_only":
            out["receive_only_msgs_per_s"] = asyncio.run(_receive_only(url, seconds))
        else:
            with tempfile.TemporaryDirectory() as d:
                r = LiveRunner(_cfg({"ws_url": url}), out_dir=d)
                s = asyncio.run(r.run(seconds))
            out.update({"msgs_per_s": s["frames"] / s["wall_s"], "p50_us": s["frame_to_step_us_p50"],
                        "p99_us": s["frame_to_step_us_p99"], "backpressure_total": s["backpressure_total"],
                        "late_exch_events": s["late_exch_events"], "n_decisions": s["n_decisions"]})
        stop.set()
        proc.join(10)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args(argv)
    if not REC.exists():
        sys.exit(f"{REC} is absent: the benchmark needs ../shared/data/real beside the project root")
    from live.replay import load_cryptofeed

    rec = load_cryptofeed(REC)
    a = one_core(rec)
    p = PREVIOUS
    print(f"one core, no socket ({a['frames']} frames, step per frame): frame -> decisions p50 {a['p50_us']:.1f} us, "
          f"p99 {a['p99_us']:.1f} us wall (goal p99 <= 200 us; previous p50 {p['p50_us']} / p99 {p['p99_us']} us, "
          f"p99 ratio {p['p99_us'] / a['p99_us']:.1f}x); on-CPU p50 {a['cpu_p50_us']:.1f} us, p99 {a['cpu_p99_us']:.1f} us")
    print(f"  frames that ran a decision tick ({a['tick_frames']}): p50 {a['tick_p50_us']:.0f} us, p99 "
          f"{a['tick_p99_us']:.0f} us wall, on-CPU p99 {a['tick_cpu_p99_us']:.0f} us")
    print(f"  sustained {a['msgs_per_s']:,.0f} msg/s stepping every {a['batch']} frames (previous {p['msgs_per_s']:,.0f}, "
          f"{a['msgs_per_s'] / p['msgs_per_s']:.1f}x), {a['msgs_per_s_step_each']:,.0f} msg/s stepping every frame "
          f"(previous {p['msgs_per_s_step_each']:,.0f}, {a['msgs_per_s_step_each'] / p['msgs_per_s_step_each']:.1f}x; "
          f"goal >= 50,000); decode-only baseline {a['decode_only_msgs_per_s']:,.0f} msg/s "
          f"(ratio {a['msgs_per_s'] / a['decode_only_msgs_per_s']:.3f})")
    print(f"  paced feed (session clock +1 ms per frame, so decision ticks come due): frame -> decisions p50 "
          f"{a['paced_p50_us']:.1f} us, p99 {a['paced_p99_us']:.1f} us wall; frames that ran a decision tick "
          f"({a['paced_tick_frames']}): p50 {a['paced_tick_p50_us']:.0f} us, p99 {a['paced_tick_p99_us']:.0f} us wall, "
          f"on-CPU p99 {a['paced_tick_cpu_p99_us']:.0f} us")
    print(f"  on-CPU (thread time: the wall figures less the time the OS ran other processes): "
          f"{a['cpu_msgs_per_s']:,.0f} msg/s stepping every {a['batch']} frames, "
          f"{a['cpu_msgs_per_s_step_each']:,.0f} msg/s stepping every frame")
    b = loopback(args.seconds)
    print(f"loopback replay at full speed: runner {b['msgs_per_s']:,.0f} msg/s vs receive-only client "
          f"{b['receive_only_msgs_per_s']:,.0f} msg/s (ratio {b['msgs_per_s'] / b['receive_only_msgs_per_s']:.3f}); "
          f"frame -> step done p50 {b['p50_us']:.0f} us, p99 {b['p99_us']:.0f} us; backpressure_total "
          f"{b['backpressure_total']}, decisions {b['n_decisions']}")


if __name__ == "__main__":
    main()
