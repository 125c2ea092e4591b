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


@pytest.fixture(scope="session")
def bybit_recording(real_data):
    """The shared Bybit v5 websocket recording, loaded for a replay venue (linear endpoint)."""
    from live.replay import load_cryptofeed

    return load_cryptofeed(real_data / "bybit" / "BYBIT.jsonl.gz", "/v5/public/linear")


@pytest.fixture
def live_then_backtest(tmp_path):
    """``run(cfg_path, venue, venue_name=..., symbols=..., duration=..., ingest_args=())``: ``mmlab live --paper``
    against the replay ``venue`` (served by ``live.replay.VenueThread``), then ``mmlab data ingest`` of what the
    session recorded and ``mmlab backtest`` of that store with the same config. Returns ``(live summary, live out
    dir, store, backtest run dir)``; each command's exit code is asserted."""
    import json

    from typer.testing import CliRunner

    from live.replay import VenueThread
    from mmlab.cli import app

    def run(cfg_path, venue, *, venue_name: str, symbols: str, duration: str = "5.5s", ingest_args=()):
        cli = CliRunner()
        live_out = tmp_path / "live"
        th = VenueThread(venue)
        try:
            r = cli.invoke(app, ["live", "--paper", "--config", str(cfg_path), "--venue", venue_name,
                                 "--symbols", symbols, "--ws-url", venue.url, "--rest-url", venue.rest_url,
                                 "--duration", duration, "--out", str(live_out), "--json"])
            assert r.exit_code == 0, r.output
        finally:
            th.close()
        summary = json.loads((live_out / "summary.json").read_text())
        store = tmp_path / "store"
        rec_files = sorted(str(p) for p in (live_out / "recording").glob("*.gz"))
        r = cli.invoke(app, ["data", "ingest", *rec_files, "--source", venue_name, *ingest_args, "--out", str(store)])
        assert r.exit_code == 0, r.output
        run_dir = tmp_path / "run"
        r = cli.invoke(app, ["backtest", "--config", str(cfg_path), "--data", str(store), "--out", str(run_dir),
                             "--no-report", "--quiet"])
        assert r.exit_code == 0, r.output
        return summary, live_out, store, run_dir

    return run
