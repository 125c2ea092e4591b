"""Analysis of finished runs: metrics from result frames, HTML/PNG reports, run comparison, the stage perf gate.

Everything here reads a run directory (``summary.json``, ``manifest.json``, ``config.toml`` and the parquet
frames written by ``mmlab.sim.engine.write_run``); nothing imports the simulator's kernels. Importing this
package loads no heavy dependency: the submodules import polars / matplotlib when called.

>>> from mmlab.analysis.report import build_report  # doctest: +SKIP
>>> build_report("experiments/runs/demo")  # doctest: +SKIP
PosixPath('experiments/runs/demo/report.html')
"""
