"""A study on a real PostgreSQL server started by the test (initdb + pg_ctl into tmp_path on a free port).

`.ci/run` installs the Debian `postgresql` package when it is missing; elsewhere the test skips when no
`initdb`/`pg_ctl` is found on PATH or under /usr/lib/postgresql/*/bin.
"""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mmlab.data.ingest import IngestOptions, ingest
from mmlab.hpo.runner import driver_url, load_stored_study, run_study
from mmlab.hpo.study import parse_study

pytestmark = pytest.mark.real_data


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory):
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; .ci/run installs the postgresql package")
    base = tmp_path_factory.mktemp("pg")
    prefix: list[str] = []
    if os.geteuid() == 0:
        # The server refuses to run as root: run it as the postgres account, in a folder that account can reach
        # (pytest keeps its own temporary root private to root), removed again at teardown.
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no postgres account to run the server as")
        runuser = shutil.which("runuser")
        if not runuser:
            pytest.skip("running as root and runuser is missing")
        prefix = [runuser, "-u", "postgres", "--"]
        base = Path(tempfile.mkdtemp(prefix="mmlab-test-pg-"))
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data = base / "data"
    port = _free_port()

    def run(args):
        r = subprocess.run(prefix + args, capture_output=True, text=True, cwd=base)
        if r.returncode != 0:
            log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
            raise RuntimeError(f"{args[0]} failed: {r.stdout}{r.stderr}{log}")

    run([initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
    run([pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60", "-o",
         f"-p {port} -h 127.0.0.1 -k {base}", "start"])
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        yield url
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, cwd=base)
        if prefix:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def study(real_data, tmp_path_factory):
    src = real_data / "binance_usdm"
    root = tmp_path_factory.mktemp("store")
    ingest([src / "usdm_btcusdt_20240718.gz", src / "usdm_btcusdt_20240719.gz"], "binance-usdm", root, IngestOptions())
    return parse_study({
        "study": {"name": "pg_study", "seed": 11, "split": "1min", "pruner": "none", "n_startup_trials": 1},
        "base": {"data": {"root": str(root), "venue": "binance-usdm", "symbols": ["BTCUSDT"],
                          "start": "2024-07-19T00:00:00Z", "end": "2024-07-19T00:02:00Z"},
                 "strategy": {"grid_num": 2}},
        "search": {"strategy.half_spread_ticks": {"low": 0.5, "high": 4.0}},
        "objective": {"metrics": ["pnl_net"], "directions": ["maximize"], "constraints": ["taker_share <= 0.09"]},
    })


def test_study_on_postgres_then_a_worker_process_joins(postgres_url, study, tmp_path):
    import sqlalchemy

    res = run_study(study, 2, storage=postgres_url, out=tmp_path / "out")
    assert res["storage"] == postgres_url and res["states"]["complete"] == 2
    assert (tmp_path / "out" / "best.toml").exists()
    out = subprocess.run([sys.executable, "-m", "mmlab.cli", "hpo", "worker", "--study", "pg_study", "--storage",
                          postgres_url, "--n-trials", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    st, sc = load_stored_study("pg_study", postgres_url)
    assert len(st.trials) == 3 and sc.to_json() == study.to_json()
    # The trials live in the server's tables, not in a local file.
    with sqlalchemy.create_engine(driver_url(postgres_url)).connect() as c:
        assert c.execute(sqlalchemy.text("select count(*) from trials")).scalar() == 3
