"""The pipeline strategy's cached kernels follow the sources compiled into them."""

from __future__ import annotations

from mmlab.sim import pipeline_strategy as ps


def test_strategy_spec_ties_decision_and_hook_caches_to_stage_sources():
    ps.grid_pipeline_spec()  # building a spec ties the caches (before the first compile or cache load)
    for fn in (ps.pipeline_sim_decide_nb, ps.pipeline_on_event_nb, ps.pipeline_on_fill_nb):
        cache_file = fn._cache._cache_file
        stamp = cache_file._source_stamp
        # (numba's own stamp of pipeline_strategy.py, sha256 of the stage/feature/book sources)
        assert isinstance(stamp, tuple) and len(stamp[1]) == 64
    before = ps.pipeline_sim_decide_nb._cache._cache_file._source_stamp
    ps.tie_caches()  # a second call changes nothing
    assert ps.pipeline_sim_decide_nb._cache._cache_file._source_stamp == before
