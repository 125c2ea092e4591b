"""Model scoring with onnxruntime only: one row per tick (live) or a batch (backtest).

This module imports onnxruntime, numpy, the standard library and ``mmlab.types`` and nothing else, so the live
runner never loads LightGBM or scikit-learn (ARCHITECTURE.md rule 6). A model directory holds ``model.onnx``
and ``model.json`` (feature list, schema hash, thresholds) written by ``mmlab export-onnx``.

>>> scorer = OnnxScorer("models/m1")  # doctest: +SKIP
>>> scorer.score_row(np.zeros(len(scorer.features), np.float32))  # doctest: +SKIP
0.0569...
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import mmlab.types  # noqa: F401  (the only mmlab module this file may use)

ONNX_FILE = "model.onnx"
ONNX_META_FILE = "model.json"


class OnnxScorer:
    """Probability of the positive class from an exported model, single-threaded and allocation-free per row.

    Parameters
    ----------
    model_dir : directory with ``model.onnx`` and ``model.json``.
    threads : intra-op threads of the single-row session (1: a tick's score never waits for a thread pool).
    batch_threads : threads of :meth:`score_batch`. Each scores its own chunks of rows with the single-threaded
        session, so every row is summed by the same kernel in the same order as :meth:`score_row`: scores are
        bit-identical for any ``batch_threads``. Idle workers block (no spinning CPU between calls).

    Notes
    -----
    Batch throughput is bound by the tree walk (``benchmarks/bench_ml.py`` prints it against LightGBM's own
    ``predict`` and a trivial ONNX model of the same input): float32 C-contiguous input is passed without a copy,
    the chunk size hardly matters from 8 k rows up, and graph optimization levels change nothing for a
    tree ensemble. onnxruntime's own intra-op threads are not used for batches: with more trees than threads its
    tree kernel splits the trees of every 128-row block between the threads (a synchronisation per block, and
    partial sums that round differently from one thread's), while row chunks scale without either.
    """

    def __init__(self, model_dir: str | os.PathLike, *, threads: int = 1, batch_threads: int = 1) -> None:
        import onnxruntime as ort

        d = Path(model_dir)
        onnx_path, meta_path = d / ONNX_FILE, d / ONNX_META_FILE
        if not onnx_path.exists() or not meta_path.exists():
            from mmlab.errors import DataError

            raise DataError(f"{d} lacks {ONNX_FILE}/{ONNX_META_FILE}; run `mmlab export-onnx {d}` first")
        self.model_dir = d
        self.meta = json.loads(meta_path.read_text())
        self.features: list[str] = list(self.meta["features"])
        self.schema_hash: str = self.meta["schema_hash"]
        self.thresholds: dict = dict(self.meta.get("thresholds") or {})
        # Exports before the single-output graph wrote "probabilities" [n, 2] with class 1 in column 1.
        out_name = self.meta.get("output", "probabilities")
        self._col = int(self.meta.get("positive_class_column", 1))
        self._sess = ort.InferenceSession(str(onnx_path), _options(ort, threads), providers=["CPUExecutionProvider"])
        if int(batch_threads) < 1:
            from mmlab.errors import ConfigError

            raise ConfigError(f"batch_threads must be >= 1, got {batch_threads!r}")
        self.batch_threads = int(batch_threads)
        self._pool = None  # worker threads of score_batch, made on the first batch that uses them
        self._input = self._sess.get_inputs()[0].name
        self._outputs = [out_name]
        width = next(o.shape for o in self._sess.get_outputs() if o.name == out_name)[-1]
        width = width if isinstance(width, int) else self._col + 1
        self._row = np.zeros((1, len(self.features)), dtype=np.float32)
        self._feed = {self._input: self._row}
        # Single rows go through an I/O binding on fixed buffers: no per-call allocation or output copy.
        self._out = np.zeros((1, width), dtype=np.float32)
        self._io = self._sess.io_binding()
        self._io.bind_cpu_input(self._input, self._row)
        self._io.bind_output(out_name, "cpu", 0, np.float32, list(self._out.shape), self._out.ctypes.data)

    @property
    def model_id(self) -> str:
        return self.meta.get("model_id", self.model_dir.name)

    def score_row(self, x) -> float:
        """Score one feature vector (length = len(features), in feature order)."""
        self._row[0, :] = x
        self._sess.run_with_iobinding(self._io)
        return float(self._out[0, self._col])

    def score_batch(self, X, chunk_rows: int = 1 << 16) -> np.ndarray:
        """Scores of the rows of ``X`` (n, len(features)) as float64; one onnxruntime call per chunk of at most
        ``chunk_rows`` rows, the chunks spread over ``batch_threads`` threads (onnxruntime releases the GIL)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            from mmlab.errors import DataError

            raise DataError(f"score_batch expects shape (n, {len(self.features)}) for features {self.features}, got {X.shape}")
        n = len(X)
        out = np.empty(n, dtype=np.float64)
        workers = min(self.batch_threads, -(-n // _MIN_THREAD_ROWS))
        if workers > 1:
            chunk_rows = max(1, min(chunk_rows, -(-n // workers)))
        starts = range(0, n, chunk_rows)

        def run(i: int) -> None:
            out[i:i + chunk_rows] = self._sess.run(self._outputs, {self._input: X[i:i + chunk_rows]})[0][:, self._col]

        if workers <= 1:
            for i in starts:
                run(i)
        else:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.batch_threads, thread_name_prefix="mmlab-score")
            for f in [self._pool.submit(run, i) for i in starts]:
                f.result()
        return out


# Batches below this many rows per worker run on the calling thread (a hand-off costs more than it saves).
_MIN_THREAD_ROWS = 4096


def _options(ort, threads: int):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads != 1:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts
