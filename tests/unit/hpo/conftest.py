"""A short window of the shared BTCUSDT capture (2 minutes, cut into 1-minute segments) for fast study tests."""

import pytest

from mmlab.data.ingest import IngestOptions, ingest

WINDOW = {"start": "2024-07-19T00:00:00Z", "end": "2024-07-19T00:02:00Z"}


@pytest.fixture(scope="session")
def btc_store(real_data, tmp_path_factory):
    src = real_data / "binance_usdm"
    root = tmp_path_factory.mktemp("hpo_store")
    ingest([src / "usdm_btcusdt_20240718.gz", src / "usdm_btcusdt_20240719.gz"], "binance-usdm", root, IngestOptions())
    return root


def study_dict(root, **study) -> dict:
    """A tiny study over the 2-minute window: two strategy parameters, pnl_net, one constraint."""
    return {
        "study": {"name": "t", "seed": 7, "split": "1min", "n_startup_trials": 1, **study},
        "base": {
            "data": {"root": str(root), "venue": "binance-usdm", "symbols": ["BTCUSDT"], **WINDOW},
            "sim": {"maker_fee": -0.00005, "taker_fee": 0.0007},
            "strategy": {"grid_num": 2, "skew_ticks": 1.0},
        },
        "search": {"strategy.half_spread_ticks": {"low": 0.5, "high": 4.0},
                   "strategy.grid_num": {"low": 1, "high": 3}},
        "objective": {"metrics": ["pnl_net"], "directions": ["maximize"], "constraints": ["taker_share <= 0.09"]},
    }
