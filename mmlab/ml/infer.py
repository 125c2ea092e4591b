"""Model scoring of exported models: one row per tick (live) or a batch (backtest).

Two backends score the same ``model.onnx``: ``"compiled"`` (default) reads the graph's tree ensemble from the
file's protobuf fields itself and scores it with the numba kernels of :mod:`mmlab.ml.trees_nb` (onnxruntime's comparison,
NaN and float32 summation semantics; several times onnxruntime's batch rate), ``"onnxruntime"`` runs the graph.
At load the compiled backend is checked against onnxruntime on probe rows built from the model's own
thresholds. This module imports onnxruntime, numpy, the standard library, ``mmlab.types``/``mmlab.errors`` and,
for the compiled backend, :mod:`mmlab.ml.trees_nb` (numba; not the onnx package), so the live runner never loads LightGBM or
scikit-learn (ARCHITECTURE.md rule 6). A model directory holds ``model.onnx`` and ``model.json`` (feature list,
schema hash, thresholds) written by ``mmlab export-onnx``.

>>> scorer = OnnxScorer("models/m1")  # doctest: +SKIP
>>> scorer.score_row(np.zeros(len(scorer.features), np.float32))  # doctest: +SKIP
0.0569...
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import mmlab.types  # noqa: F401  (besides mmlab.errors and, for the compiled backend, mmlab.ml.trees_nb)

ONNX_FILE = "model.onnx"
ONNX_META_FILE = "model.json"
BACKENDS = ("compiled", "onnxruntime")
# Largest |compiled - onnxruntime| accepted on the probe rows at load (onnxruntime's Sigmoid op is a float32
# approximation: about one float32 ulp, <= 1.2e-7, apart from the exact logistic).
PROBE_ATOL = 1e-6
PROBE_SEED = 20240718


class OnnxScorer:
    """Probability of the positive class from an exported model, single-threaded and allocation-free per row.

    Parameters
    ----------
    model_dir : directory with ``model.onnx`` and ``model.json``.
    threads : intra-op threads of the single-row session (1: a tick's score never waits for a thread pool).
    batch_threads : threads of :meth:`score_batch`. Each scores its own chunks of rows with the single-threaded
        kernel, so every row is summed by the same kernel in the same order as :meth:`score_row`: scores are
        bit-identical for any ``batch_threads``. Idle workers block (no spinning CPU between calls).
    backend : ``"compiled"`` (numba kernels of :mod:`mmlab.ml.trees_nb`; checked against onnxruntime at load,
        :class:`~mmlab.errors.ParityError` when they differ by more than ``PROBE_ATOL``) or ``"onnxruntime"``.
        The compiled backend's row and batch scores are bit-identical to each other; they differ from
        onnxruntime's by at most about 1e-7 for the exported ``Sigmoid`` graph (0 for the classifier graph).

    Notes
    -----
    With ``backend="onnxruntime"``, batch throughput is bound by the tree walk (``benchmarks/bench_ml.py`` prints it against LightGBM's own
    ``predict`` and a trivial ONNX model of the same input): float32 C-contiguous input is passed without a copy,
    the chunk size hardly matters from 8 k rows up, and graph optimization levels change nothing for a
    tree ensemble. onnxruntime's own intra-op threads are not used for batches: with more trees than threads its
    tree kernel splits the trees of every 128-row block between the threads (a synchronisation per block, and
    partial sums that round differently from one thread's), while row chunks scale without either.
    """

    def __init__(self, model_dir: str | os.PathLike, *, threads: int = 1, batch_threads: int = 1,
                 backend: str = "compiled") -> None:
        import onnxruntime as ort

        if backend not in BACKENDS:
            from mmlab.errors import ConfigError

            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r} ([model] backend)")

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
        self.backend = backend
        self.probe_max_abs_diff: float | None = None
        if backend == "compiled":
            self._load_compiled(onnx_path, out_name)

    def _load_compiled(self, onnx_path: Path, out_name: str) -> None:
        """Read the tree ensemble, compile (or load) the kernels and check them against onnxruntime."""
        from mmlab.errors import DataError
        from mmlab.ml import trees_nb

        ens = trees_nb.read_tree_ensemble(onnx_path, out_name, self._col)
        nf = len(self.features)
        if ens.n_features != nf:
            raise DataError(f"{onnx_path} reads {ens.n_features} features, {self.model_dir / ONNX_META_FILE} lists {nf}; "
                            f"re-export the model (mmlab export-onnx {self.model_dir})")
        self._ens = ens
        self._args = ens.args()
        self._row_nb, self._rows_nb = trees_nb.tree_score_row_nb, trees_nb.tree_score_rows_nb
        self._x32 = np.zeros(nf, dtype=np.float32)
        self._xe = np.zeros(2 * nf, dtype=np.float32)
        self.probe_max_abs_diff = self.check_against_onnxruntime()

    def check_against_onnxruntime(self, atol: float = PROBE_ATOL) -> float:
        """Max |compiled - onnxruntime| over :func:`probe_rows` of the model (rows and batch); raises
        :class:`~mmlab.errors.ParityError` above ``atol`` or when row and batch scores differ."""
        from mmlab.errors import ParityError

        X = probe_rows(self._ens)
        ref = np.concatenate([self._sess.run(self._outputs, {self._input: X[i:i + (1 << 16)]})[0][:, self._col]
                              for i in range(0, len(X), 1 << 16)]).astype(np.float64)
        got = self._batch_compiled(X, 1 << 16, 1)
        d = np.abs(got - ref)
        d[np.isnan(got) & np.isnan(ref)] = 0.0
        worst = int(np.nanargmax(np.where(np.isnan(d), np.inf, d))) if len(d) else 0
        diff = float(d[worst]) if len(d) else 0.0
        fix = f"load it with OnnxScorer({str(self.model_dir)!r}, backend=\"onnxruntime\") ([model] backend = \"onnxruntime\")"
        if not diff <= atol:
            raise ParityError(f"compiled scores of {self.model_dir / ONNX_FILE} differ from onnxruntime by {diff:.3g} "
                              f"(allowed {atol:g}) on probe row {worst} of {len(X)} ({X[worst].tolist()}: "
                              f"compiled {got[worst]!r}, onnxruntime {ref[worst]!r}); {fix}")
        step = max(1, len(X) // 512)
        rows = np.array([self.score_row(x) for x in X[::step]])
        if not np.array_equal(rows, got[::step], equal_nan=True):
            raise ParityError(f"compiled row and batch scores of {self.model_dir / ONNX_FILE} differ; {fix}")
        return diff

    @property
    def model_id(self) -> str:
        return self.meta.get("model_id", self.model_dir.name)

    def score_row(self, x) -> float:
        """Score one feature vector (length = len(features), in feature order)."""
        if self.backend == "compiled":
            self._x32[:] = x
            return self._row_nb(*self._args, self._x32, self._xe)
        self._row[0, :] = x
        self._sess.run_with_iobinding(self._io)
        return float(self._out[0, self._col])

    def score_batch(self, X, chunk_rows: int = 1 << 16) -> np.ndarray:
        """Scores of the rows of ``X`` (n, len(features)) as float64; one kernel (or onnxruntime) call per chunk of
        at most ``chunk_rows`` rows, the chunks spread over ``batch_threads`` threads (both release the GIL)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            from mmlab.errors import DataError

            raise DataError(f"score_batch expects shape (n, {len(self.features)}) for features {self.features}, got {X.shape}")
        if self.backend == "compiled":
            return self._batch_compiled(X, chunk_rows, self.batch_threads)
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

    def _batch_compiled(self, X: np.ndarray, chunk_rows: int, threads: int) -> np.ndarray:
        """Compiled scores of the float32 C-contiguous ``X``: chunks of rows over ``threads`` threads (the kernel
        releases the GIL); each row's score does not depend on the chunking."""
        n = len(X)
        out = np.empty(n, dtype=np.float64)
        workers = min(threads, -(-n // _MIN_THREAD_ROWS))
        if workers <= 1:
            self._rows_nb(*self._args, X, 0, n, out)
            return out
        chunk_rows = max(1, min(chunk_rows, -(-n // workers)))
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.batch_threads, thread_name_prefix="mmlab-score")
        futs = [self._pool.submit(self._rows_nb, *self._args, X, i, min(i + chunk_rows, n), out) for i in range(0, n, chunk_rows)]
        for f in futs:
            f.result()
        return out


@np.errstate(over="ignore")
def probe_rows(ens, seed: int = PROBE_SEED, n_random: int = 4096, max_rows: int = 1 << 16) -> np.ndarray:
    """Float32 rows that reach every split of ``ens`` (a :class:`mmlab.ml.trees_nb.TreeEnsemble`) from both
    sides: per feature, each threshold and its float32 neighbours below and above (the other features drawn from
    their own split values), NaN in each feature and in all, and random rows from ``seed``; at most
    ``max_rows`` (an even subsample beyond)."""
    nf = ens.n_features
    nodes = ens.nodes[: ens.leaf_start // 4]
    slot = nodes["slot"].astype(np.int64)
    t = nodes["threshold"].astype(np.float32)
    feat = np.where(slot < nf, slot, slot - nf)
    val = np.where(slot < nf, t, -t).astype(np.float32)  # a -x node's threshold is -(pred(-t)), next to t
    rng = np.random.default_rng(seed)
    pools = []
    for f in range(nf):
        v = val[(feat == f) & np.isfinite(val)]
        v = np.unique(np.concatenate([v, np.nextafter(v, np.float32(-np.inf)), np.nextafter(v, np.float32(np.inf))]))
        pools.append(v if len(v) else np.zeros(1, dtype=np.float32))
    parts = []
    for f in range(nf):
        rows = np.column_stack([rng.choice(p, len(pools[f])) for p in pools]).astype(np.float32)
        rows[:, f] = pools[f]
        parts.append(rows)
    rand = np.column_stack([rng.choice(p, n_random) for p in pools]).astype(np.float32)
    lo = np.array([p.min() for p in pools], dtype=np.float32)
    hi = np.array([p.max() for p in pools], dtype=np.float32)
    wide = (lo - 1 + (hi - lo + 2) * rng.random((n_random, nf))).astype(np.float32)
    nan_one = rand[: 64 * nf].copy()
    nan_one[np.arange(len(nan_one)), np.arange(len(nan_one)) % nf] = np.nan
    nan_some = wide.copy()
    nan_some[rng.random(nan_some.shape) < 0.3] = np.nan
    X = np.concatenate([*parts, rand, wide, nan_one, nan_some, np.full((1, nf), np.nan, dtype=np.float32)])
    if len(X) > max_rows:
        X = X[np.linspace(0, len(X) - 1, max_rows).astype(np.int64)]
    return np.ascontiguousarray(X, dtype=np.float32)


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
