"""Live paper trading: venue adapters, the paper exchange (the simulator's own kernels on the live book), the
runner, recorder and Prometheus metrics. Entry point: ``mmlab live --paper`` (:func:`live.runner.run_live`).

Nothing here is imported by ``mmlab`` at import time (ARCHITECTURE.md rule 8).
"""
