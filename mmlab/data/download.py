"""Download historical market data days: Tardis.dev datasets and Bybit's daily order book dumps.

Sources and URL layouts (as the services publish them):

``tardis``
    ``https://datasets.tardis.dev/v1/{exchange}/{data_type}/{YYYY}/{MM}/{DD}/{SYMBOL}.csv.gz``; an API key from
    the environment variable ``TARDIS_API_KEY`` is sent as ``Authorization: Bearer <key>``. The first day of each
    month is free without a key. Files are saved as ``{out_dir}/tardis/{exchange}/{exchange}_{data_type}_
    {YYYY-MM-DD}_{SYMBOL}.csv.gz`` (the names Tardis' own client uses, which ``mmlab data ingest --source tardis``
    reads the data type from).
``bybit``
    Order book: ``https://quote-saver.bycsi.com/orderbook/{category}/{SYMBOL}/{YYYY-MM-DD}_{SYMBOL}_ob{depth}.data.zip``
    (depth 500 up to 2025-08-20, 200 afterwards; the other depth is tried when the first is missing). Linear
    trades: ``https://public.bybit.com/trading/{SYMBOL}/{SYMBOL}{YYYY-MM-DD}.csv.gz``. Files keep their
    published names under ``{out_dir}/bybit/{category}/{SYMBOL}/``.

Every file is fetched into ``<name>.part`` and renamed only after it passed its checks, so a file with the final
name is complete and a second run skips it without a request. An interrupted transfer resumes with an HTTP
``Range`` request; network errors, HTTP 5xx and 429 are retried with exponential backoff. Checks: the byte count
against ``Content-Length`` (or the total of ``Content-Range``), the archive's own integrity (every gzip member's
CRC32 and length, every zip member's CRC32), and a SHA-256 where the server offers one (an
``x-amz-checksum-sha256``, ``Digest`` or ``Repr-Digest`` header, or a ``<url>.sha256`` file). Errors are
:class:`~mmlab.errors.DownloadError` naming the URL, the status and the fix.

>>> download("tardis", symbol="BTCUSDT", start="2024-08-01")  # doctest: +SKIP
[PosixPath('data/raw/tardis/binance-futures/binance-futures_incremental_book_L2_2024-08-01_BTCUSDT.csv.gz'), ...]
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mmlab.errors import DownloadError

TARDIS_URL = "https://datasets.tardis.dev"
BYBIT_ORDERBOOK_URL = "https://quote-saver.bycsi.com"
BYBIT_TRADES_URL = "https://public.bybit.com"
#: Last day Bybit published 500-level order book dumps (200 levels from the next day on).
BYBIT_OB500_LAST_DAY = dt.date(2025, 8, 20)
TARDIS_KEY_ENV = "TARDIS_API_KEY"
CHUNK_BYTES = 1 << 20
MAX_BACKOFF_S = 120.0
TIMEOUT_S = 60.0
USER_AGENT = "mmlab-download/1"

_BYBIT_BOOK_TYPES = ("incremental_book_L2", "orderbook", "book")
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class _Job:
    """One remote file: candidate URLs (first that exists wins), local path per candidate, integrity format."""

    urls: tuple[str, ...]
    paths: tuple[Path, ...]
    fmt: str  # "gzip" | "zip"
    headers: tuple[tuple[str, str], ...] = ()
    fix_404: str = ""


class _NotFound(Exception):
    pass


def _days(start: str, end: str | None) -> list[dt.date]:
    try:
        d0 = dt.date.fromisoformat(str(start))
        d1 = dt.date.fromisoformat(str(end)) if end else d0
    except ValueError as exc:
        raise DownloadError(f"--from/--to must be dates YYYY-MM-DD, got {start!r}/{end!r}") from exc
    if d1 < d0:
        raise DownloadError(f"--to {d1} is before --from {d0}: give the first day first")
    return [d0 + dt.timedelta(days=i) for i in range((d1 - d0).days + 1)]


def _tardis_jobs(symbol, days, exchange, data_types, out_dir, base_url) -> list[_Job]:
    key = os.environ.get(TARDIS_KEY_ENV, "").strip()
    sym = symbol.replace(":", "-").replace("/", "-").upper()
    base = (base_url or TARDIS_URL).rstrip("/")
    jobs = []
    for day in days:
        for dtype in data_types:
            url = f"{base}/v1/{exchange}/{dtype}/{day:%Y/%m/%d}/{sym}.csv.gz"
            if day.day != 1 and not key:
                raise DownloadError(
                    f"{url}: Tardis serves only the first day of each month without an API key ({day} is not); "
                    f"set {TARDIS_KEY_ENV} to your tardis.dev key, or download a first-of-month day"
                )
            path = Path(out_dir) / "tardis" / exchange / f"{exchange}_{dtype}_{day:%Y-%m-%d}_{sym}.csv.gz"
            headers = (("Authorization", f"Bearer {key}"),) if key else ()
            jobs.append(_Job((url,), (path,), "gzip", headers,
                             f"check --exchange {exchange!r}, --symbol {sym!r} (Tardis' exchange symbol id), "
                             f"--data-types {dtype!r} and that the day is within the dataset's range"))
    return jobs


def _bybit_jobs(symbol, days, category, data_types, out_dir, base_url) -> list[_Job]:
    if category not in ("linear", "spot"):
        raise DownloadError(f"--category must be linear or spot for Bybit dumps, got {category!r}")
    sym = symbol.upper()
    book_base = (base_url or BYBIT_ORDERBOOK_URL).rstrip("/")
    trades_base = (base_url or BYBIT_TRADES_URL).rstrip("/")
    folder = Path(out_dir) / "bybit" / category / sym
    jobs = []
    for day in days:
        for dtype in data_types:
            if dtype in _BYBIT_BOOK_TYPES:
                depths = (500, 200) if day <= BYBIT_OB500_LAST_DAY else (200, 500)
                names = [f"{day:%Y-%m-%d}_{sym}_ob{d}.data.zip" for d in depths]
                urls = tuple(f"{book_base}/orderbook/{category}/{sym}/{n}" for n in names)
                jobs.append(_Job(urls, tuple(folder / n for n in names), "zip", (),
                                 f"check --symbol {sym!r} and --category {category!r}; Bybit's dumps start in 2023 "
                                 "and the current day is published the next day"))
            elif dtype == "trades":
                if category != "linear":
                    raise DownloadError(
                        "Bybit publishes spot trades as monthly files under public.bybit.com/spot/<SYMBOL>/, which "
                        "this command does not fetch; pass --data-types incremental_book_L2"
                    )
                name = f"{sym}{day:%Y-%m-%d}.csv.gz"
                jobs.append(_Job((f"{trades_base}/trading/{sym}/{name}",), (folder / name,), "gzip", (),
                                 f"check --symbol {sym!r}; Bybit's trade files are published the next day"))
            else:
                raise DownloadError(f"Bybit data type {dtype!r} is not published; use incremental_book_L2 and/or trades")
    return jobs


def download(
    source: str,
    *,
    symbol: str,
    start: str,
    end: str | None = None,
    exchange: str = "binance-futures",
    data_types: Iterable[str] = ("incremental_book_L2", "trades"),
    category: str = "linear",
    out_dir: str | os.PathLike = "data/raw",
    base_url: str | None = None,
    retries: int = 5,
    backoff_s: float = 1.0,
    progress: bool | None = None,
) -> list[Path]:
    """Download the days ``start``..``end`` (inclusive, UTC) of ``symbol`` from ``source`` (``tardis`` or ``bybit``).

    Parameters
    ----------
    exchange : Tardis exchange id (``binance-futures``, ``bybit``, ``deribit``, ...); Tardis only.
    data_types : Tardis data types; for Bybit ``incremental_book_L2`` (the order book dump) and ``trades``.
    category : Bybit ``linear`` or ``spot``.
    out_dir : where files land (``<out_dir>/tardis/...``, ``<out_dir>/bybit/...``).
    base_url : replaces the service's scheme and host (a mirror, or a local server in tests).
    retries : attempts after the first for network errors, HTTP 5xx and 429.
    backoff_s : first retry delay, seconds; doubled after every failed attempt.
    progress : show a rich progress bar; default: when stderr is a terminal.

    Returns
    -------
    list of Path : the complete files, in request order (already present ones included).
    """
    data_types = [t.strip() for t in data_types if t and t.strip()]
    if not data_types:
        raise DownloadError("no --data-types given: name at least one, e.g. incremental_book_L2,trades")
    if retries < 0:
        raise DownloadError(f"--retries must be >= 0, got {retries}")
    days = _days(start, end)
    source = source.lower()
    if source == "tardis":
        jobs = _tardis_jobs(symbol, days, exchange, data_types, out_dir, base_url)
    elif source == "bybit":
        jobs = _bybit_jobs(symbol, days, category, data_types, out_dir, base_url)
    else:
        raise DownloadError(f"unknown download source {source!r}: use tardis or bybit")
    show = sys.stderr.isatty() if progress is None else progress
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    cols = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    out: list[Path] = []
    with Progress(*cols, disable=not show, transient=False) as bar:
        for job in jobs:
            out.append(_run_job(job, retries, backoff_s, bar))
    return out


def _run_job(job: _Job, retries: int, backoff_s: float, bar) -> Path:
    for path in job.paths:
        if path.exists():
            return path  # final names exist only after verification
    tried = []
    for url, path in zip(job.urls, job.paths):
        try:
            return _fetch(url, path, job, retries, backoff_s, bar)
        except _NotFound:
            tried.append(url)
    raise DownloadError(f"{' and '.join(tried)}: HTTP 404 not found; {job.fix_404}")


class _SameHostAuthRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry the API key to another host (e.g. a CDN or a pre-signed storage URL)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


_OPENER = urllib.request.build_opener(_SameHostAuthRedirect())


def _request(url: str, headers: dict[str, str], timeout: float = TIMEOUT_S):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers})
    return _OPENER.open(req, timeout=timeout)


def _fetch(url: str, path: Path, job: _Job, retries: int, backoff_s: float, bar) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    headers = dict(job.headers)
    attempt = 0
    task = bar.add_task(path.name, total=None)
    last_err = ""
    while True:
        try:
            total, digest = _transfer(url, part, headers, bar, task)
            have = part.stat().st_size
            if total is not None and have != total:
                raise _Retryable(f"received {have} of {total} bytes")
            _check_integrity(part, job.fmt)
            _check_sha256(url, part, digest, headers)
            os.replace(part, path)
            return path
        except _NotFound:
            bar.remove_task(task)
            raise
        except _Retryable as exc:
            last_err = str(exc)
        if attempt >= retries:
            bar.remove_task(task)
            kept = f"; the next run resumes the partial file {part}" if part.exists() else ""
            raise DownloadError(
                f"{url}: failed after {attempt + 1} attempts, last: {last_err}{kept}; check the network, the service's "
                "status, or raise --retries"
            )
        time.sleep(min(backoff_s * (2**attempt), MAX_BACKOFF_S))
        attempt += 1


class _Retryable(Exception):
    pass


def _transfer(url: str, part: Path, headers: dict[str, str], bar, task) -> tuple[int | None, str | None]:
    """One HTTP attempt into ``part`` (resuming it). Returns (expected total size or None, offered sha256 or None)."""
    have = part.stat().st_size if part.exists() else 0
    h = dict(headers)
    if have:
        h["Range"] = f"bytes={have}-"
    try:
        resp = _request(url, h)
    except urllib.error.HTTPError as exc:
        status = exc.code
        body = _error_body(exc)
        if status == 416 and have:
            # The range starts at or past the end: the part may already hold the whole file.
            m = re.match(r"bytes \*/(\d+)", exc.headers.get("Content-Range", "") if exc.headers else "")
            if m and int(m.group(1)) == have:
                return have, _offered_sha256(exc.headers)
            part.unlink(missing_ok=True)
            raise _Retryable(f"HTTP 416 for a resume from byte {have}; restarting from scratch") from exc
        if status == 404:
            raise _NotFound() from exc
        if status in (401, 403):
            raise DownloadError(
                f"{url}: HTTP {status} {body}; the server refused the request: set {TARDIS_KEY_ENV} to a key whose "
                "plan covers this exchange and day (Tardis), or check the URL"
            ) from exc
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status} {body}") from exc
        raise DownloadError(f"{url}: HTTP {status} {body}; check the symbol, exchange and data type") from exc
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError, OSError) as exc:
        raise _Retryable(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from exc
    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        if status == 206:
            m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                part.unlink(missing_ok=True)
                raise _Retryable(f"HTTP 206 with Content-Range {resp.headers.get('Content-Range')!r} for a resume from byte {have}")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        else:
            total = int(length) if length is not None else None
            have = 0
            mode = "wb"
        bar.update(task, total=total, completed=have)
        digest = _offered_sha256(resp.headers)
        try:
            with open(part, mode) as f:
                while True:
                    chunk = resp.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.advance(task, len(chunk))
        except (http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError, OSError) as exc:
            raise _Retryable(f"transfer interrupted ({type(exc).__name__}) after {part.stat().st_size} bytes") from exc
    return total, digest


def _error_body(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(300).decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001 - the body is only decoration of the message
        text = ""
    text = re.sub(r"\s+", " ", text)
    return f"{exc.reason} {text}".strip() if text else str(exc.reason or "")


def _offered_sha256(headers) -> str | None:
    """A SHA-256 of the whole object if the response carries one (S3 checksum or RFC 3230/9530 digests)."""
    if headers is None:
        return None
    v = headers.get("x-amz-checksum-sha256")
    if v and "-" not in v:
        return _b64_to_hex(v)
    for name in ("Repr-Digest", "Digest"):
        v = headers.get(name)
        if not v:
            continue
        m = re.search(r"sha-256\s*=\s*:?([A-Za-z0-9+/=]+):?", v, flags=re.IGNORECASE)
        if m:
            return _b64_to_hex(m.group(1))
    return None


def _b64_to_hex(v: str) -> str | None:
    try:
        raw = base64.b64decode(v, validate=True)
    except (ValueError, base64.binascii.Error):
        return None
    return raw.hex() if len(raw) == 32 else None


def _sidecar_sha256(url: str, headers: dict[str, str]) -> str | None:
    """The hex digest of ``<url>.sha256`` if the server publishes one (``sha256sum`` format or a bare digest)."""
    try:
        with _request(url + ".sha256", headers, timeout=15.0) as resp:
            text = resp.read(4096).decode("ascii", "replace").split()
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        return None
    return text[0].lower() if text and _SHA256_HEX.match(text[0]) else None


def _check_sha256(url: str, part: Path, offered: str | None, headers: dict[str, str]) -> None:
    expected = offered or _sidecar_sha256(url, headers)
    if not expected:
        return
    h = hashlib.sha256()
    with open(part, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(chunk)
    if h.hexdigest() != expected.lower():
        part.unlink(missing_ok=True)
        raise _Retryable(f"SHA-256 mismatch: got {h.hexdigest()}, the server states {expected}; re-downloading")


def _check_integrity(part: Path, fmt: str) -> None:
    """Gzip: every member decompresses and its CRC32/length trailer matches. Zip: every member's CRC32 matches."""
    if fmt == "gzip":
        try:
            _check_gzip(part)
        except (zlib.error, EOFError) as exc:
            part.unlink(missing_ok=True)
            raise _Retryable(f"corrupt gzip ({exc}); re-downloading") from exc
    elif fmt == "zip":
        try:
            with zipfile.ZipFile(part) as zf:
                bad = zf.testzip()
                if not zf.namelist():
                    raise zipfile.BadZipFile("empty archive")
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            part.unlink(missing_ok=True)
            raise _Retryable(f"corrupt zip ({exc}); re-downloading") from exc
        if bad is not None:
            part.unlink(missing_ok=True)
            raise _Retryable(f"zip member {bad} fails its CRC; re-downloading")


def _check_gzip(path: Path) -> None:
    d = zlib.decompressobj(wbits=47)
    seen = False
    with open(path, "rb") as f:
        while True:
            data = f.read(CHUNK_BYTES)
            if not data:
                break
            while data:
                seen = True
                d.decompress(data, 0)
                if d.eof:
                    data = d.unused_data
                    d = zlib.decompressobj(wbits=47)
                    seen = bool(data)
                else:
                    data = b""
    if seen or not path.stat().st_size:
        raise EOFError("stream ends before the gzip end-of-stream marker")
