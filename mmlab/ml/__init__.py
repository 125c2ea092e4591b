"""Research data to deployable models: datasets with time splits, LightGBM training, ONNX export with parity,
the model registry, release checks and inference.

- :mod:`mmlab.ml.dataset` — labels.parquet of run directories -> feature matrix + targets, purged time splits,
  feature schema hash (parquet sidecar).
- :mod:`mmlab.ml.train` — seeded, single-threaded LightGBM; PR-AUC, precision at tau_entry, Brier, ECE;
  ``lgbm_meta.json``.
- :mod:`mmlab.ml.export` — ONNX (opset 17, ai.onnx.ml 3) and the LightGBM/onnxruntime parity check.
- :mod:`mmlab.ml.registry` — ``models/registry/manifest.json``: list, promote (active/shadow), rollback.
- :mod:`mmlab.ml.infer` — scoring, single row and batch: compiled tree kernels (:mod:`mmlab.ml.trees_nb`, checked
  against onnxruntime at load) or onnxruntime; never LightGBM or scikit-learn.
- :mod:`mmlab.ml.release` — ``mmlab release check``: schema, metrics against the active model, parity, backtest gates.
- :mod:`mmlab.ml.loop_scores` — model scores in the backtest loop (``[model] id``).

Nothing is imported here, so ``import mmlab.ml.infer`` pulls in no training library.
"""
