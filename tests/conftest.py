"""Shared fixtures: the real market data of ../shared/data/real (skipped with a reason where absent)."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = (REPO_ROOT / ".." / "shared" / "data" / "real").resolve()


def real_data_path() -> Path | None:
    return REAL_DATA if REAL_DATA.is_dir() else None


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Path of ../shared/data/real; skips the test where the folder is absent (a user's clone)."""
    if real_data_path() is None:
        pytest.skip(f"{REAL_DATA} is absent: the real-data tests need ../shared/data/real beside the project root")
    return REAL_DATA
