"""The live benchmark's split of frame latencies by frame kind (snapshot steps, the step after one, steady)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
import bench_live


def test_frame_kind_reads_the_frame_head():
    assert bench_live._frame_kind(b'{"topic":"orderbook.200.BTCUSDT","type":"snapshot","ts":1}') == 0
    assert bench_live._frame_kind(b'{"topic":"orderbook.200.BTCUSDT","type":"delta","ts":1}') == 1
    assert bench_live._frame_kind(b'{"topic":"publicTrade.BTCUSDT","ts":1}') == 2
    assert bench_live._frame_kind(b'{"op":"pong"}') == 3


def test_split_by_kind_assigns_each_frame_by_its_step():
    steps = [([1, 2], [1000, 2000], 10_000),  # steady
             ([1, 0, 1], [3000, 4000, 5000], 90_000),  # a snapshot step: every frame of it
             ([1], [6000], 20_000),  # right after a snapshot step
             ([2], [7000], 30_000)]  # steady again
    lat, cpu = bench_live.split_by_kind(steps)
    assert list(lat["all"]) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert list(lat["steady"]) == [1.0, 2.0, 7.0]
    assert list(lat["snapshot"]) == [3.0, 4.0, 5.0]
    assert list(lat["after_snapshot"]) == [6.0]
    assert list(cpu["snapshot"]) == [90.0] and list(cpu["steady"]) == [10.0, 30.0]
    assert len(cpu["all"]) == 4 and np.isclose(cpu["all"].sum(), 150.0)
