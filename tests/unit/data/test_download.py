"""mmlab.data.download against a local HTTP server that serves fixture files in the venues' URL layouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mmlab.data.download import download
from mmlab.errors import DownloadError

L2 = "incremental_book_L2"
TARDIS_L2_PATH = "/v1/binance-futures/incremental_book_L2/2024/08/01/BTCUSDT.csv.gz"
TARDIS_TRADES_PATH = "/v1/binance-futures/trades/2024/08/01/BTCUSDT.csv.gz"


class _State:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.actions: dict[str, list[str]] = {}  # per path, consumed one per request: "half", "503", ...
        self.log: list[tuple[str, str | None, str | None]] = []  # (path, Range, Authorization)
        self.lock = threading.Lock()

    def requests(self, path: str | None = None) -> list[tuple[str, str | None, str | None]]:
        return [r for r in self.log if path is None or r[0] == path]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        st: _State = self.server.state
        path = urllib.parse.urlsplit(self.path).path
        with st.lock:
            st.log.append((path, self.headers.get("Range"), self.headers.get("Authorization")))
            pending = st.actions.get(path)
            action = pending.pop(0) if pending else "ok"
        if action.isdigit():
            self._send(int(action), b"simulated failure")
            return
        data = st.files.get(path)
        if data is None:
            self._send(404, b"Not Found")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(re.match(r"bytes=(\d+)-$", rng).group(1))
            if start >= len(data):
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if action == "half":
            # Send half of the promised bytes, then drop the connection.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = _State()
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    httpd.state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd.state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_key(monkeypatch):
    monkeypatch.delenv("TARDIS_API_KEY", raising=False)


def _tardis_l2_gz(n_deltas: int = 3000) -> bytes:
    """A small incremental_book_L2 day in Tardis' CSV format (timestamps in µs)."""
    t0 = 1722470400_000000
    lines = ["exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"]
    for i in range(5):
        lines.append(f"binance-futures,BTCUSDT,{t0},{t0 + 900},true,bid,{64000.0 - i / 10:.1f},{1 + i}.5")
        lines.append(f"binance-futures,BTCUSDT,{t0},{t0 + 900},true,ask,{64000.1 + i / 10:.1f},{2 + i}.25")
    for k in range(n_deltas):
        t = t0 + 1000 * (k + 1)
        side = "bid" if k % 2 else "ask"
        price = 64000.0 - (k % 5) / 10 if side == "bid" else 64000.1 + (k % 5) / 10
        lines.append(f"binance-futures,BTCUSDT,{t},{t + 850},false,{side},{price:.1f},{(k % 7) * 0.125}")
    return gzip.compress(("\n".join(lines) + "\n").encode())


def _tardis_trades_gz(n: int = 500) -> bytes:
    t0 = 1722470400_000000
    lines = ["exchange,symbol,timestamp,local_timestamp,id,side,price,amount"]
    for k in range(n):
        t = t0 + 2000 * (k + 1)
        lines.append(f"binance-futures,BTCUSDT,{t},{t + 700},{5_000_000 + k},{'buy' if k % 3 else 'sell'},64000.1,0.01{k % 9}")
    return gzip.compress(("\n".join(lines) + "\n").encode())


def _bybit_zip(day: str, symbol: str, depth: int) -> bytes:
    """A small daily order book dump: one snapshot and deltas, one v5 frame per line, zipped."""
    ts = 1733011200000
    frames = [{"topic": f"orderbook.{depth}.{symbol}", "type": "snapshot", "ts": ts,
               "data": {"s": symbol, "b": [["2.5000", "100"]], "a": [["2.5001", "90"]], "u": 1, "seq": 10}, "cts": ts - 2}]
    for k in range(200):
        frames.append({"topic": f"orderbook.{depth}.{symbol}", "type": "delta", "ts": ts + 100 * (k + 1),
                       "data": {"s": symbol, "b": [["2.5000", str(100 + k)]], "a": [], "u": k + 2, "seq": 11 + k},
                       "cts": ts + 100 * (k + 1) - 2})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{day}_{symbol}_ob{depth}.data", "\n".join(json.dumps(f) for f in frames) + "\n")
    return buf.getvalue()


def _serve_tardis(server: _State) -> tuple[bytes, bytes]:
    l2, trades = _tardis_l2_gz(), _tardis_trades_gz()
    server.files[TARDIS_L2_PATH] = l2
    server.files[TARDIS_TRADES_PATH] = trades
    return l2, trades


def _get_tardis(server, tmp_path, **kw):
    args = dict(symbol="BTCUSDT", start="2024-08-01", out_dir=tmp_path / "raw", base_url=server.url, backoff_s=0.01, progress=False)
    args.update(kw)
    return download("tardis", **args)


# --------------------------------------------------------------------------------------------------- tardis


def test_tardis_first_of_month_downloads_without_key_and_verifies(server, tmp_path):
    l2, trades = _serve_tardis(server)
    files = _get_tardis(server, tmp_path)
    assert [f.name for f in files] == [
        "binance-futures_incremental_book_L2_2024-08-01_BTCUSDT.csv.gz",
        "binance-futures_trades_2024-08-01_BTCUSDT.csv.gz",
    ]
    assert files[0].read_bytes() == l2 and files[1].read_bytes() == trades
    assert files[0].parent == tmp_path / "raw" / "tardis" / "binance-futures"
    assert all(auth is None for _, _, auth in server.log)
    assert not list((tmp_path / "raw").rglob("*.part"))


def test_other_days_need_an_api_key(server, tmp_path):
    with pytest.raises(DownloadError, match=r"2024/08/02/BTCUSDT\.csv\.gz: .*set TARDIS_API_KEY"):
        _get_tardis(server, tmp_path, start="2024-08-02")
    assert server.log == []


def test_api_key_is_sent_as_bearer_token(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TARDIS_API_KEY", "k-123")
    server.files["/v1/binance-futures/trades/2024/08/02/BTCUSDT.csv.gz"] = _tardis_trades_gz()
    _get_tardis(server, tmp_path, start="2024-08-02", data_types=["trades"])
    assert server.log[0][2] == "Bearer k-123"


def test_resume_after_the_server_drops_mid_transfer(server, tmp_path):
    l2, _ = _serve_tardis(server)
    server.actions[TARDIS_L2_PATH] = ["half"]
    files = _get_tardis(server, tmp_path, data_types=[L2])
    assert files[0].read_bytes() == l2
    reqs = server.requests(TARDIS_L2_PATH)
    assert len(reqs) == 2  # the sidecar lookup goes to <path>.sha256
    assert reqs[0][1] is None and reqs[1][1] == f"bytes={len(l2) // 2}-"


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    l2, _ = _serve_tardis(server)
    target = tmp_path / "raw" / "tardis" / "binance-futures" / "binance-futures_incremental_book_L2_2024-08-01_BTCUSDT.csv.gz"
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(l2[:1000])
    files = _get_tardis(server, tmp_path, data_types=[L2])
    assert files[0].read_bytes() == l2
    assert server.requests(TARDIS_L2_PATH)[0][1] == "bytes=1000-"


def test_5xx_is_retried_with_backoff_then_succeeds(server, tmp_path):
    l2, _ = _serve_tardis(server)
    server.actions[TARDIS_L2_PATH] = ["503", "500"]
    files = _get_tardis(server, tmp_path, data_types=[L2])
    assert files[0].read_bytes() == l2
    assert len(server.requests(TARDIS_L2_PATH)) == 3


def test_5xx_beyond_the_retries_is_a_download_error(server, tmp_path):
    _serve_tardis(server)
    server.actions[TARDIS_L2_PATH] = ["503"] * 10
    with pytest.raises(DownloadError, match=r"BTCUSDT\.csv\.gz: failed after 3 attempts, last: HTTP 503.*--retries"):
        _get_tardis(server, tmp_path, data_types=[L2], retries=2)
    assert len(server.requests(TARDIS_L2_PATH)) == 3


def test_404_is_a_download_error_naming_url_status_and_fix(server, tmp_path):
    with pytest.raises(DownloadError, match=r"http://127\.0\.0\.1:\d+/v1/binance-futures/trades/2024/08/01/BTCUSDT\.csv\.gz: HTTP 404.*--symbol"):
        _get_tardis(server, tmp_path, data_types=["trades"])
    assert len(server.log) == 1  # a 404 is not retried (and no checksum is looked for)


def test_second_run_downloads_nothing(server, tmp_path):
    _serve_tardis(server)
    first = _get_tardis(server, tmp_path, progress=True)  # the rich progress bar path
    n = len(server.log)
    second = _get_tardis(server, tmp_path)
    assert second == first
    assert len(server.log) == n


def test_corrupt_gzip_is_rejected_and_leaves_no_file(server, tmp_path):
    l2, _ = _serve_tardis(server)
    bad = bytearray(l2)
    bad[len(bad) // 2] ^= 0xFF
    server.files[TARDIS_L2_PATH] = bytes(bad)
    with pytest.raises(DownloadError, match="corrupt gzip"):
        _get_tardis(server, tmp_path, data_types=[L2], retries=1)
    assert not list((tmp_path / "raw").rglob("*.csv.gz*"))


def test_sha256_sidecar_is_verified_when_offered(server, tmp_path):
    l2, _ = _serve_tardis(server)
    server.files[TARDIS_L2_PATH + ".sha256"] = f"{hashlib.sha256(l2).hexdigest()}  BTCUSDT.csv.gz\n".encode()
    assert _get_tardis(server, tmp_path / "ok", data_types=[L2])[0].read_bytes() == l2
    server.files[TARDIS_L2_PATH + ".sha256"] = ("0" * 64 + "\n").encode()
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        _get_tardis(server, tmp_path / "bad", data_types=[L2], retries=1)


def test_downloaded_tardis_files_ingest(server, tmp_path):
    ingest_mod = Path(__file__).resolve().parents[3] / "mmlab" / "data" / "ingest" / "tardis.py"
    if not ingest_mod.exists():
        pytest.skip("mmlab/data/ingest/tardis.py is missing: the Tardis parser is not in this tree yet")
    from mmlab.data import store
    from mmlab.data.ingest import IngestOptions, ingest

    _serve_tardis(server)
    files = _get_tardis(server, tmp_path)
    results = ingest(files, "tardis", tmp_path / "store", IngestOptions())
    (r,) = results
    assert r.venue == "tardis-binance-futures" and r.symbol == "BTCUSDT"
    kinds = store.read_meta(tmp_path / "store", r.venue, r.symbol)["ingest"]["rows_by_kind"]
    assert kinds["TRADE"] == 500 and kinds["SNAPSHOT"] == 10 and kinds["DEPTH"] == 3000


# ---------------------------------------------------------------------------------------------------- bybit


def test_bybit_orderbook_dump_is_downloaded_and_checked(server, tmp_path):
    data = _bybit_zip("2024-12-01", "XRPUSDT", 500)
    server.files["/orderbook/linear/XRPUSDT/2024-12-01_XRPUSDT_ob500.data.zip"] = data
    (f,) = download("bybit", symbol="XRPUSDT", start="2024-12-01", data_types=[L2], out_dir=tmp_path,
                    base_url=server.url, backoff_s=0.01, progress=False)
    assert f == tmp_path / "bybit" / "linear" / "XRPUSDT" / "2024-12-01_XRPUSDT_ob500.data.zip"
    assert f.read_bytes() == data


def test_bybit_falls_back_to_the_other_depth(server, tmp_path):
    server.files["/orderbook/spot/XRPUSDT/2025-08-01_XRPUSDT_ob200.data.zip"] = _bybit_zip("2025-08-01", "XRPUSDT", 200)
    (f,) = download("bybit", symbol="XRPUSDT", start="2025-08-01", category="spot", data_types=[L2], out_dir=tmp_path,
                    base_url=server.url, backoff_s=0.01, progress=False)
    assert f.name == "2025-08-01_XRPUSDT_ob200.data.zip"
    assert [p for p, _, _ in server.log if not p.endswith(".sha256")] == [
        "/orderbook/spot/XRPUSDT/2025-08-01_XRPUSDT_ob500.data.zip",
        "/orderbook/spot/XRPUSDT/2025-08-01_XRPUSDT_ob200.data.zip",
    ]


def test_bybit_truncated_zip_resumes_and_linear_trades(server, tmp_path):
    data = _bybit_zip("2025-09-02", "BTCUSDT", 200)
    server.files["/orderbook/linear/BTCUSDT/2025-09-02_BTCUSDT_ob200.data.zip"] = data
    server.actions["/orderbook/linear/BTCUSDT/2025-09-02_BTCUSDT_ob200.data.zip"] = ["half"]
    server.files["/trading/BTCUSDT/BTCUSDT2025-09-02.csv.gz"] = gzip.compress(b"timestamp,symbol,side,size,price\n")
    files = download("bybit", symbol="BTCUSDT", start="2025-09-02", out_dir=tmp_path, base_url=server.url,
                     backoff_s=0.01, progress=False)
    assert [f.name for f in files] == ["2025-09-02_BTCUSDT_ob200.data.zip", "BTCUSDT2025-09-02.csv.gz"]
    assert files[0].read_bytes() == data


def test_bybit_spot_trades_are_refused_with_the_fix(tmp_path):
    with pytest.raises(DownloadError, match="--data-types incremental_book_L2"):
        download("bybit", symbol="BTCUSDT", start="2025-09-02", category="spot", out_dir=tmp_path, progress=False)


def test_argument_errors(tmp_path):
    with pytest.raises(DownloadError, match="unknown download source 'kaiko'"):
        download("kaiko", symbol="BTCUSDT", start="2024-08-01", out_dir=tmp_path)
    with pytest.raises(DownloadError, match="--to 2024-07-31 is before --from 2024-08-01"):
        download("tardis", symbol="BTCUSDT", start="2024-08-01", end="2024-07-31", out_dir=tmp_path)


def test_cli_download_prints_the_files(server, tmp_path):
    from typer.testing import CliRunner

    from mmlab.cli import app

    _serve_tardis(server)
    res = CliRunner().invoke(app, ["data", "download", "tardis", "--symbol", "BTCUSDT", "--from", "2024-08-01",
                                   "--out", str(tmp_path), "--base-url", server.url])
    assert res.exit_code == 0, res.output
    assert res.output.split() == [
        str(tmp_path / "tardis" / "binance-futures" / "binance-futures_incremental_book_L2_2024-08-01_BTCUSDT.csv.gz"),
        str(tmp_path / "tardis" / "binance-futures" / "binance-futures_trades_2024-08-01_BTCUSDT.csv.gz"),
    ]
