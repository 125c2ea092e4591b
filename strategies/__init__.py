"""Strategy presets: stage choices and default parameters of the shared pipeline, one module per strategy.

``[strategy] name = "<module>"`` runs ``strategies/<module>.py`` (loaded on first use by
:func:`mmlab.sim.strategies.get_strategy`); each module defines ``PRESET``, a :class:`strategies.base.Preset`.
``grid`` names the simulator's built-in reference grid; ``strategies.grid`` (same decisions) runs the preset.
"""
