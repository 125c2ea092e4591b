"""Parameter search and the experiment harness: Optuna studies over backtests, regime splits and thresholds,
A/B comparison with safety gates, canary rollout replay, execution stress and fill-model calibration.

Nothing here is imported by the trading path (``pipeline``, ``features``, ``sim``, ``live``).

>>> from mmlab.hpo.study import load_study  # doctest: +SKIP
>>> from mmlab.hpo.runner import run_study  # doctest: +SKIP
>>> run_study(load_study("experiments/study_grid_btcusdt.toml"), n_trials=20)  # doctest: +SKIP
"""
