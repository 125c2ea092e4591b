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
    batch_threads : intra-op threads of :meth:`score_batch`; above 1 a second session is made whose threads
        do not spin between calls (spinning only burns the CPU other work on the machine needs). Its scores
        equal the single-row ones to float32 rounding only (threads sum parts of the trees of small batches),
        so the backtest keeps 1: batch and row scores there are bit-identical.

    Notes
    -----
    Batch throughput is bound by the tree walk (``benchmarks/bench_ml.py`` prints it against LightGBM's own
    ``predict`` and a trivial ONNX model of the same input): float32 C-contiguous input is passed without a copy,
    the chunk size hardly matters from 8 k rows up, and graph optimization levels change nothing for a
    tree ensemble.
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
        self._batch_sess = self._sess if batch_threads == 1 else ort.InferenceSession(
            str(onnx_path), _options(ort, batch_threads), providers=["CPUExecutionProvider"])
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
        """Scores of the rows of ``X`` (n, len(features)) as float64; one onnxruntime call per chunk."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            from mmlab.errors import DataError

            raise DataError(f"score_batch expects shape (n, {len(self.features)}) for features {self.features}, got {X.shape}")
        out = np.empty(len(X), dtype=np.float64)
        for i in range(0, len(X), chunk_rows):
            out[i:i + chunk_rows] = self._batch_sess.run(self._outputs, {self._input: X[i:i + chunk_rows]})[0][:, self._col]
        return out


def _options(ort, threads: int):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads != 1:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts
