"""Compiled scoring of the tree ensemble of an exported ``model.onnx``, with onnxruntime's semantics.

:func:`read_tree_ensemble` reads the ``ai.onnx.ml`` tree node (opset 1-3 attributes) of the graph with a small
decoder of the ONNX protobuf fields it needs (no ``onnx``/protobuf, scikit-learn, LightGBM or onnxruntime import:
a live process stays as light as with onnxruntime alone) and returns the flat arrays of a
:class:`TreeEnsemble`; :func:`tree_score_row_nb` and :func:`tree_score_rows_nb` score one row or rows
``[a, b)`` of a float32 matrix. Supported graphs (what ``mmlab export-onnx`` writes and the converter's layout
before it):

- ``TreeEnsembleRegressor`` (``n_targets = 1``, ``aggregate_function = SUM``, ``post_transform`` NONE, at most
  one base value), optionally followed by ``Sigmoid``; ``Identity`` nodes anywhere;
- binary ``TreeEnsembleClassifier`` (two labels, every leaf weight on class 0, ``LOGISTIC``): column 1 of
  ``probabilities`` is ``logistic(s)``, column 0 ``logistic(-s)``.

Anything else raises :class:`~mmlab.errors.DataError` naming the file and the attribute or op.

Semantics replicated from onnxruntime: each node compares the float32 input with its float32 threshold
(BRANCH_LEQ, LT, GTE, GT, EQ, NEQ); a NaN input goes to the true branch when ``nodes_missing_value_tracks_true``
is set, else where the comparison sends it (false for all modes but NEQ); leaf values are summed in float32 in
tree order, then the base value is added, then the logistic ``1 / (1 + exp(-|s|))`` (mirrored for s < 0) in
float32. The Sigmoid op of onnxruntime uses a vectorized approximation, so scores of such graphs differ from
onnxruntime's by about one float32 ulp (<= 1e-7); :class:`mmlab.ml.infer.OnnxScorer` checks this at load.

Node layout: the ONNX modes are first brought to one canonical form (``x <= t`` -> lo, else hi, NaN -> lo or
hi; LT and GTE use the float32 predecessor of the threshold, GT and GTE swap the children, EQ and NEQ become two
nodes), then to a single ordered comparison ``row[slot] <= threshold`` on the extended row [x, -x], which
sends NaN to the false child without a NaN test (:func:`_uniform`). Nodes are 16-byte records
(:data:`tree_node_dtype`), children are word offsets, leaves come last and point to themselves. The row kernel
walks each tree to its leaf; the batch kernel walks each tree for a block of rows, one level of all the block's
rows per pass (no data-dependent branch, and the rows' independent loads overlap) until at most half of them
are still on branch nodes (LightGBM's leaf-wise trees are lopsided: the mean path is about half the depth),
then only those rows, from a list that drops each row at its leaf.
Measured with ``benchmarks/bench_ml.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from mmlab.errors import DataError
from mmlab.types import PostTransform, tree_canonical_node_dtype, tree_node_dtype

# Rows scored together per tree by the batch kernel: their extended rows, node offsets and sums stay in L1.
BLOCK_ROWS = 256
# Levels the batch kernel walks for all rows of a block before it counts the rows still on branch nodes.
_DENSE_LEVELS = 3


@dataclass(frozen=True)
class TreeEnsemble:
    """Flat arrays of a tree ensemble as the kernels read them.

    Attributes
    ----------
    nodes : tree_node_dtype [n_nodes], branch nodes first, then leaves (from ``leaf_start / 4`` on).
    words, words_f32 : ``nodes`` as uint32 and float32 [4 n_nodes] (one buffer); node ``k`` starts at word 4k.
    leaf_value : float32 [4 n_nodes], a leaf's weight at its word offset (0 elsewhere).
    roots : uint32 [n_trees], word offset of each tree's root; depths : int32 [n_trees], branch nodes on the
        longest path of each tree.
    leaf_start : word offset of the first leaf (a node is a leaf iff its offset >= leaf_start).
    base_value : float32 added to the sum; post_transform : :class:`PostTransform`; sign : +1 or -1 applied to the
        sum before the transform (-1: column 0 of a binary classifier).
    n_features : width of the input rows; path : the file read.
    """

    nodes: np.ndarray
    leaf_value: np.ndarray
    roots: np.ndarray
    depths: np.ndarray
    leaf_start: int
    base_value: float
    post_transform: int
    sign: float
    n_features: int
    path: str

    @property
    def words(self) -> np.ndarray:
        return self.nodes.view(np.uint32)

    def args(self) -> tuple:
        """Leading arguments of :func:`tree_score_rows_nb` and :func:`tree_score_row_nb`."""
        w = self.words
        return (w, w.view(np.float32), self.leaf_value, self.roots, self.depths, np.uint32(self.leaf_start),
                np.float32(self.base_value), int(self.post_transform), np.float32(self.sign))


_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ", "LEAF")


def read_tree_ensemble(onnx_path, output: str | None = None, column: int = 0, *, label: str | None = None) -> TreeEnsemble:
    """The tree ensemble that computes column ``column`` of graph output ``output`` of ``onnx_path``.

    Parameters
    ----------
    onnx_path : the ``model.onnx`` file, or an ``onnx.ModelProto`` (named ``label`` in messages).
    output : graph output name (default: the first output).
    column : column of that output (0 for ``probability`` [n, 1], 0 or 1 for ``probabilities`` [n, 2]).

    Raises
    ------
    DataError
        when the graph is not one of the supported shapes; the message names the file and the op or attribute.

    >>> ens = read_tree_ensemble("models/m1/model.onnx", "probability")  # doctest: +SKIP
    >>> x = np.zeros(ens.n_features, np.float32)  # doctest: +SKIP
    >>> tree_score_row_nb(*ens.args(), x, np.empty(2 * len(x), np.float32))  # doctest: +SKIP
    """
    if hasattr(onnx_path, "SerializeToString"):
        path, data = Path(label or "<in-memory model>"), onnx_path.SerializeToString()
    else:
        path = Path(onnx_path)
        data = path.read_bytes()

    def bad(what: str) -> DataError:
        return DataError(f"{path}: {what}; the compiled evaluator cannot score it, "
                         "use OnnxScorer(..., backend=\"onnxruntime\") ([model] backend = \"onnxruntime\")")

    try:
        g = _decode_graph(data)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise bad(f"not a readable ONNX model ({exc})") from exc
    if len(g.input) != 1:
        raise bad(f"graph has {len(g.input)} inputs, expected one float32 [n, n_features]")
    dims = g.input[0].dims
    if g.input[0].elem_type != _FLOAT or len(dims) != 2 or dims[1] is None:
        raise bad(f"input {g.input[0].name!r} is not float32 [n, n_features] with a fixed feature count")
    n_features = int(dims[1])
    outs = list(g.output)
    name = outs[0] if output is None else output
    if name not in outs:
        raise bad(f"no graph output {name!r} (outputs {outs})")
    producer = {o: n for n in g.node for o in n.output}
    sigmoid = False
    reached = name  # the tree node's output that ``name`` passes on
    node = producer.get(reached)
    while node is not None and node.op_type in ("Identity", "Sigmoid"):
        if node.op_type == "Sigmoid":
            if sigmoid:
                raise bad("two Sigmoid ops in a row")
            sigmoid = True
        reached = node.input[0]
        node = producer.get(reached)
    if node is None or node.op_type not in ("TreeEnsembleRegressor", "TreeEnsembleClassifier") or node.domain != "ai.onnx.ml":
        raise bad(f"output {name!r} is computed by op {getattr(node, 'op_type', None)!r} (domain "
                  f"{getattr(node, 'domain', '')!r}); supported: TreeEnsembleRegressor/TreeEnsembleClassifier "
                  "(ai.onnx.ml) followed by Identity/Sigmoid")
    if node.input[0] != g.input[0].name:
        raise bad(f"op {node.op_type} reads {node.input[0]!r}, not the graph input {g.input[0].name!r}")
    a = node.attrs
    for k in a:
        if k.endswith("_as_tensor"):
            raise bad(f"attribute {k} of {node.op_type} (double thresholds/weights) is not supported")
    post = a.get("post_transform", "NONE")
    base = [float(v) for v in a.get("base_values") or []]
    if node.op_type == "TreeEnsembleRegressor":
        if int(a.get("n_targets", 1)) != 1 or set(a.get("target_ids") or [0]) != {0}:
            raise bad(f"TreeEnsembleRegressor with n_targets {a.get('n_targets')} (only 1 is supported)")
        if a.get("aggregate_function", "SUM") != "SUM":
            raise bad(f"aggregate_function {a.get('aggregate_function')!r} (only SUM is supported)")
        if post != "NONE":
            # onnxruntime applies only PROBIT to a one-target regressor and passes LOGISTIC's sum through unchanged
            raise bad(f"post_transform {post!r} of TreeEnsembleRegressor (NONE is supported; add a Sigmoid op)")
        if len(base) > 1:
            raise bad(f"base_values {base} (at most one for one target)")
        if column != 0:
            raise bad(f"column {column} of a one-target regressor output")
        wt, wn, ww = a.get("target_treeids") or [], a.get("target_nodeids") or [], a.get("target_weights") or []
        sign = 1.0
    else:
        labels = list(a.get("classlabels_int64s") or a.get("classlabels_strings") or [])
        if len(labels) != 2 or set(a.get("class_ids") or [0]) != {0} or post != "LOGISTIC" or len(base) > 1:
            raise bad(f"TreeEnsembleClassifier with labels {labels}, class_ids {sorted(set(a.get('class_ids') or []))}, "
                      f"post_transform {post!r}, base_values {base}; supported: binary, weights on class 0, LOGISTIC")
        if len(node.output) < 2 or reached != node.output[1]:
            raise bad(f"output {name!r} is not the probabilities output of {node.op_type}")
        if column not in (0, 1):
            raise bad(f"column {column} of a binary classifier's probabilities")
        wt, wn, ww = a.get("class_treeids") or [], a.get("class_nodeids") or [], a.get("class_weights") or []
        sign = 1.0 if column == 1 else -1.0
        post = "LOGISTIC"
    if sigmoid:
        if post != "NONE":
            raise bad(f"Sigmoid after a {node.op_type} whose post_transform is {post!r}")
        post = "LOGISTIC"
    nodes, leaf, roots, depths = _canonical(a, wt, wn, ww, n_features, bad)
    words, leaf4, roots4, leaf_start = _uniform(nodes, leaf, roots, n_features)
    base_value = np.float32(base[0] if base else 0.0)
    return TreeEnsemble(words, leaf4, roots4, depths, leaf_start, float(base_value), int(PostTransform[post]), sign,
                        n_features, str(path))


# ONNX protobuf field numbers (onnx.proto) of what the reader needs; the ``onnx`` package is not imported, so a
# live process scoring with the compiled backend loads neither it nor protobuf.
_FLOAT = 1  # TensorProto.FLOAT
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_FLOATS, _ATTR_INTS, _ATTR_STRINGS = 1, 2, 3, 6, 7, 8


@dataclass
class _ValueInfo:
    name: str
    elem_type: int
    dims: list  # int or None (symbolic or unknown)


@dataclass
class _Node:
    op_type: str
    domain: str
    input: list
    output: list
    attrs: dict


@dataclass
class _Graph:
    input: list  # _ValueInfo
    output: list  # names
    node: list  # _Node


def _fields(buf: bytes) -> dict:
    """Protobuf wire fields of one message: number -> list of (wire type, value: int or bytes)."""
    out: dict = {}
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            size, i = _varint(buf, i)
            v, i = buf[i:i + size], i + size
            if i > n:
                raise ValueError("truncated length-delimited field")
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        out.setdefault(num, []).append((wt, v))
    return out


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _str(f: dict, num: int) -> str:
    return f[num][-1][1].decode() if num in f else ""


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _ints(f: dict, num: int) -> list:
    vals = []
    for wt, v in f.get(num, []):
        if wt == 0:
            vals.append(_int64(v))
        else:  # packed
            i = 0
            while i < len(v):
                x, i = _varint(v, i)
                vals.append(_int64(x))
    return vals


def _floats(f: dict, num: int) -> list:
    vals = []
    for _, v in f.get(num, []):
        vals.extend(np.frombuffer(v, dtype="<f4").tolist())  # one fixed32 or a packed run
    return vals


def _attr_value(f: dict):
    kind = f[20][-1][1] if 20 in f else None
    if kind == _ATTR_FLOAT or (kind is None and 2 in f):
        return _floats(f, 2)[-1]
    if kind == _ATTR_INT or (kind is None and 3 in f):
        return _ints(f, 3)[-1]
    if kind == _ATTR_STRING or (kind is None and 4 in f):
        return _str(f, 4)
    if kind == _ATTR_FLOATS or (kind is None and 7 in f):
        return _floats(f, 7)
    if kind == _ATTR_INTS or (kind is None and 8 in f):
        return _ints(f, 8)
    if kind == _ATTR_STRINGS or (kind is None and 9 in f):
        return [v.decode() for _, v in f.get(9, [])]
    return object()  # tensor, graph or sparse attributes: only their presence matters here


def _decode_graph(data: bytes) -> _Graph:
    """The graph of a serialized ModelProto: inputs, output names and nodes with their attributes."""
    model = _fields(data)
    if 7 not in model:
        raise ValueError("no graph")
    g = _fields(model[7][-1][1])

    def value_info(buf: bytes) -> _ValueInfo:
        f = _fields(buf)
        elem, dims = 0, []
        if 2 in f:
            tt = _fields(f[2][-1][1])
            if 1 in tt:
                t = _fields(tt[1][-1][1])
                elem = t[1][-1][1] if 1 in t else 0
                if 2 in t:
                    for _, d in _fields(t[2][-1][1]).get(1, []):
                        df = _fields(d)
                        dims.append(df[1][-1][1] if 1 in df else None)
        return _ValueInfo(_str(f, 1), elem, dims)

    nodes = []
    for _, buf in g.get(1, []):
        f = _fields(buf)
        attrs = {}
        for _, ab in f.get(5, []):
            af = _fields(ab)
            attrs[_str(af, 1)] = _attr_value(af)
        nodes.append(_Node(_str(f, 4), _str(f, 7), [v.decode() for _, v in f.get(1, [])],
                           [v.decode() for _, v in f.get(2, [])], attrs))
    inits = {_str(_fields(b), 8) for _, b in g.get(5, [])}
    inputs = [vi for vi in (value_info(b) for _, b in g.get(11, [])) if vi.name not in inits]
    return _Graph(inputs, [value_info(b).name for _, b in g.get(12, [])], nodes)


@np.errstate(over="ignore")
def _uniform(nodes: np.ndarray, leaf: np.ndarray, roots: np.ndarray, n_features: int) -> tuple:
    """Kernel nodes of the canonical ones: one ordered ``<=`` per node on the extended row [x, -x].

    A node whose NaN goes to ``hi`` reads ``x`` (``x <= t`` is false for NaN). One whose NaN goes to ``lo``
    needs ``not (x <= t)`` = ``x > t`` (false for NaN) = ``-x < -t`` = ``-x <= pred(-t)``: it reads ``-x`` and
    sends the true branch to ``hi``. Branch nodes are numbered first, so leaves are the offsets >= leaf_start.
    """
    n = len(nodes)
    k = np.arange(n)
    is_leaf = (nodes["lo"] == k) & (nodes["hi"] == k)
    order = np.concatenate([np.flatnonzero(~is_leaf), np.flatnonzero(is_leaf)])
    new = np.empty(n, dtype=np.int64)
    new[order] = np.arange(n)
    out = np.zeros(n, dtype=tree_node_dtype)
    neg_inf, pos_inf = np.float32(-np.inf), np.float32(np.inf)
    for j in np.flatnonzero(~is_leaf):  # pred(-FLT_MAX) = -inf: exact, not an overflow to report
        t, f = np.float32(nodes["threshold"][j]), int(nodes["feature"][j])
        lo, hi = 4 * int(new[nodes["lo"][j]]), 4 * int(new[nodes["hi"][j]])
        if not nodes["nan_lo"][j]:
            rec = (t, f, hi, lo)
        elif np.isnan(t):  # x <= NaN is false: numbers go to hi, NaN to lo
            rec = (pos_inf, f, lo, hi)
        else:
            mt = np.float32(-t)
            rec = (np.nextafter(mt, neg_inf) if mt != neg_inf else np.float32(np.nan), n_features + f, lo, hi)
        out[new[j]] = rec
    for j in np.flatnonzero(is_leaf):
        w = 4 * int(new[j])
        out[new[j]] = (np.float32(0.0), 0, w, w)
    leaf4 = np.zeros(4 * n, dtype=np.float32)
    leaf4[4 * new] = leaf
    return out, leaf4, (4 * new[roots]).astype(np.uint32), 4 * int((~is_leaf).sum())


@np.errstate(over="ignore")
def _canonical(a: dict, wt, wn, ww, n_features: int, bad) -> tuple:
    """Nodes of the ONNX attributes in canonical form (module docstring); leaf weights summed per leaf."""
    tree = np.asarray(a.get("nodes_treeids") or [], dtype=np.int64)
    nid = np.asarray(a.get("nodes_nodeids") or [], dtype=np.int64)
    n = len(tree)
    if n == 0:
        raise bad("tree ensemble without nodes")
    feat = np.asarray(a.get("nodes_featureids") or [], dtype=np.int64)
    thr = np.asarray(a.get("nodes_values") or [0.0] * n, dtype=np.float32)
    tnode = np.asarray(a.get("nodes_truenodeids") or [], dtype=np.int64)
    fnode = np.asarray(a.get("nodes_falsenodeids") or [], dtype=np.int64)
    modes = list(a.get("nodes_modes") or [])
    track = np.asarray(a.get("nodes_missing_value_tracks_true") or [0] * n, dtype=np.int64)
    for k, v in (("nodes_featureids", feat), ("nodes_values", thr), ("nodes_truenodeids", tnode),
                 ("nodes_falsenodeids", fnode), ("nodes_modes", modes), ("nodes_missing_value_tracks_true", track),
                 ("nodes_nodeids", nid)):
        if len(v) != n:
            raise bad(f"attribute {k} has {len(v)} entries, nodes_treeids {n}")
    unknown = sorted(set(modes) - set(_MODES))
    if unknown:
        raise bad(f"nodes_modes {unknown} (supported: {', '.join(_MODES)})")
    index = {(int(t), int(i)): k for k, (t, i) in enumerate(zip(tree, nid))}
    if len(index) != n:
        raise bad("duplicate (tree id, node id) pairs in nodes_treeids/nodes_nodeids")
    branch = np.array([m != "LEAF" for m in modes])
    if branch.any() and (feat[branch].min() < 0 or feat[branch].max() >= n_features):
        raise bad(f"nodes_featureids outside [0, {n_features})")
    weight = np.zeros(n, dtype=np.float32)
    seen = np.zeros(n, dtype=bool)
    for t, i, w in zip(wt, wn, ww):
        k = index.get((int(t), int(i)))
        if k is None or branch[k]:
            raise bad(f"leaf weight for tree {t} node {i}, which is not a leaf")
        # Several weights of one leaf are summed in float32 in file order.
        weight[k] = np.float32(weight[k] + np.float32(w)) if seen[k] else np.float32(w)
        seen[k] = True
    tree_ids = list(dict.fromkeys(int(t) for t in tree))  # trees in order of first appearance
    # Output: original nodes first (same index), the second nodes of EQ/NEQ appended.
    out_thr, out_feat, out_nan = list(thr), [0] * n, [0] * n
    out_lo, out_hi = list(range(n)), list(range(n))
    neg_inf = np.float32(-np.inf)

    def child(t: int, i: int) -> int:
        k = index.get((t, int(i)))
        if k is None:
            raise bad(f"tree {t} refers to node {i}, which does not exist")
        return k

    for k in range(n):
        m = modes[k]
        if m == "LEAF":
            out_thr[k] = np.float32(0.0)
            continue
        t = int(tree[k])
        T, F = child(t, tnode[k]), child(t, fnode[k])
        tr = bool(track[k])
        out_feat[k] = int(feat[k])
        th = thr[k]
        below = np.nextafter(th, neg_inf) if th != neg_inf else np.float32(np.nan)  # x < th <=> x <= below
        if m == "BRANCH_LEQ":
            out_lo[k], out_hi[k], out_nan[k] = T, F, int(tr)
        elif m == "BRANCH_LT":
            out_thr[k], out_lo[k], out_hi[k], out_nan[k] = below, T, F, int(tr)
        elif m == "BRANCH_GT":
            out_lo[k], out_hi[k], out_nan[k] = F, T, int(not tr)
        elif m == "BRANCH_GTE":
            out_thr[k], out_lo[k], out_hi[k], out_nan[k] = below, F, T, int(not tr)
        else:
            # x == th <=> x <= th and not x <= below: node k sends x > th to ne, the rest to a second node
            # that sends x <= below to ne and the rest (x == th, or NaN) to eq.
            eq, ne = (T, F) if m == "BRANCH_EQ" else (F, T)
            nan_to = T if (tr or m == "BRANCH_NEQ") else F
            second = len(out_thr)
            out_thr.append(below)
            out_feat.append(int(feat[k]))
            out_nan.append(0)
            out_lo.append(ne)
            out_hi.append(eq)
            out_lo[k], out_hi[k], out_nan[k] = second, ne, int(nan_to != ne)
    nodes = np.zeros(len(out_thr), dtype=tree_canonical_node_dtype)
    nodes["threshold"] = np.asarray(out_thr, dtype=np.float32)
    nodes["feature"] = out_feat
    nodes["nan_lo"] = out_nan
    nodes["lo"] = out_lo
    nodes["hi"] = out_hi
    leaf = np.zeros(len(out_thr), dtype=np.float32)
    leaf[:n] = weight
    roots = np.zeros(len(tree_ids), dtype=np.int32)
    depths = np.zeros(len(tree_ids), dtype=np.int32)
    referenced = {(int(t), int(c)) for t, c, br in zip(tree, tnode, branch) if br}
    referenced |= {(int(t), int(c)) for t, c, br in zip(tree, fnode, branch) if br}
    tops: dict[int, list[int]] = {t: [] for t in tree_ids}
    for k, (t, i) in enumerate(zip(tree, nid)):
        if (int(t), int(i)) not in referenced:
            tops[int(t)].append(k)
    for j, t in enumerate(tree_ids):
        if len(tops[t]) != 1:
            raise bad(f"tree {t} has {len(tops[t])} root nodes (expected one)")
        roots[j] = tops[t][0]
        depths[j] = _depth(nodes, int(roots[j]), len(out_thr), bad, t)
    return nodes, leaf, roots, depths


def _depth(nodes: np.ndarray, root: int, limit: int, bad, t: int) -> int:
    """Branch nodes on the longest path from ``root`` (a cycle raises)."""
    best, stack = 0, [(root, 0)]
    while stack:
        k, d = stack.pop()
        if d > limit:
            raise bad(f"tree {t} has a cycle")
        lo, hi = int(nodes["lo"][k]), int(nodes["hi"][k])
        if lo == k and hi == k:
            best = max(best, d)
            continue
        stack.append((lo, d + 1))
        stack.append((hi, d + 1))
    return best


@njit(cache=True, nogil=True)
def _finish_nb(s, base_value, post_transform, sign):
    """Score of the float32 leaf sum ``s``: base value, sign, post transform (float32, as onnxruntime)."""
    s = np.float32(s + base_value)
    s = np.float32(s * sign)
    if post_transform == 1:
        one = np.float32(1.0)
        v = one / (one + np.exp(-np.abs(s)))
        return one - v if s < 0 else v
    return s


@njit(cache=True, nogil=True)
def tree_score_row_nb(words, words_f32, leaf_value, roots, depths, leaf_start, base_value, post_transform, sign, x, xe):
    """Score of one float32 row ``x``; ``xe`` is float32 scratch of 2 len(x) (the extended row [x, -x])."""
    nf = x.shape[0]
    for f in range(nf):
        xe[f] = x[f]
        xe[nf + f] = -x[f]
    s = np.float32(0.0)
    one, two = np.uint32(1), np.uint32(2)
    for t in range(roots.shape[0]):
        k = roots[t]
        while k < leaf_start:
            k = words[k + two + np.uint32(xe[words[k + one]] <= words_f32[k])]
        s = np.float32(s + leaf_value[k])
    return np.float64(_finish_nb(s, base_value, post_transform, sign))


@njit(cache=True, nogil=True)
def tree_score_rows_nb(words, words_f32, leaf_value, roots, depths, leaf_start, base_value, post_transform, sign, X, a, b,
                       out):
    """Scores of rows ``[a, b)`` of the float32 C-contiguous ``X`` into ``out[a:b]`` (float64), equal bit for bit
    to :func:`tree_score_row_nb`: each block of rows walks one tree at a time, one level of all rows per pass
    (independent rows overlap in the CPU; leaves point to themselves), until at most half the rows are still on
    branch nodes; those finish from a list that drops each row at its leaf."""
    nf = X.shape[1]
    w = 2 * nf
    acc = np.zeros(BLOCK_ROWS, dtype=np.float32)
    xe = np.empty(BLOCK_ROWS * w, dtype=np.float32)
    kk = np.empty(BLOCK_ROWS, dtype=np.uint32)
    act = np.empty(BLOCK_ROWS, dtype=np.int64)
    one, two = np.uint32(1), np.uint32(2)
    for r0 in range(a, b, BLOCK_ROWS):
        m = min(r0 + BLOCK_ROWS, b) - r0
        for i in range(m):
            acc[i] = 0.0
            for f in range(nf):
                v = X[r0 + i, f]
                xe[i * w + f] = v
                xe[i * w + nf + f] = -v
        for t in range(roots.shape[0]):
            root = roots[t]
            depth = depths[t]
            for i in range(m):
                kk[i] = root
            level = 0
            while level < depth:
                for i in range(m):
                    k = kk[i]
                    kk[i] = words[k + two + np.uint32(xe[i * w + words[k + one]] <= words_f32[k])]
                level += 1
                if _DENSE_LEVELS <= level < depth:
                    n_active = 0
                    for i in range(m):
                        n_active += kk[i] < leaf_start
                    if 2 * n_active <= m:
                        break
            if level < depth:
                n_active = 0
                for i in range(m):
                    act[n_active] = i
                    n_active += kk[i] < leaf_start
                while n_active > 0:
                    n_next = 0
                    for j in range(n_active):
                        i = act[j]
                        k = kk[i]
                        c = words[k + two + np.uint32(xe[i * w + words[k + one]] <= words_f32[k])]
                        kk[i] = c
                        act[n_next] = i
                        n_next += c < leaf_start
                    n_active = n_next
            for i in range(m):
                acc[i] = np.float32(acc[i] + leaf_value[kk[i]])
        for i in range(m):
            out[r0 + i] = np.float64(_finish_nb(acc[i], base_value, post_transform, sign))
