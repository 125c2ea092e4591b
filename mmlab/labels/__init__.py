"""Uses future events; training only. Forward-looking labels of fills and decision ticks.

Everything here looks past the time of the row it labels (markouts, fill-within-horizon, queue ETA, adverse
moves). It must never feed a decision: ``mmlab.pipeline``, ``mmlab.features``, ``mmlab.sim`` and ``live/`` do
not import it (tests/unit/test_import_rules.py). The simulator's engine attaches these labels to a finished
run's frames only after the event loop has ended.
"""

from mmlab.labels.forward import fill_labels, horizon_suffix, mid_at, order_labels

__all__ = ["fill_labels", "horizon_suffix", "mid_at", "order_labels"]
