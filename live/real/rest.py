"""Bybit v5 signed REST (real mode): credentials from the environment, HMAC-SHA256 request signing, token-bucket
rate limits per endpoint class, retries that resend the identical request (same ``orderLinkId``) and a hard stop
on authentication errors.

Signing (VENUES.md, Bybit v5): ``X-BAPI-SIGN = hex HMAC-SHA256(secret, timestamp + api_key + recv_window +
payload)`` where payload is the raw JSON body of a POST and the query string of a GET.

>>> sign("secret", 1700000000000, "key", 5000, '{"category":"linear"}')[:16]
'b4cab086c3f89ff8'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from mmlab.errors import ConfigError, MmlabError

#: REST base and private websocket of each ``[live] real_env``.
REAL_ENVS = {
    "testnet": ("https://api-testnet.bybit.com", "wss://stream-testnet.bybit.com/v5/private"),
    "demo": ("https://api-demo.bybit.com", "wss://stream-demo.bybit.com/v5/private"),
    "mainnet": ("https://api.bybit.com", "wss://stream.bybit.com/v5/private"),
}

#: Environment variables holding the API key and secret (never read from a file, never written).
ENV_KEY = "BYBIT_API_KEY"
ENV_SECRET = "BYBIT_API_SECRET"

#: retCodes that mean our credentials or clock are wrong: every later request would fail the same way.
AUTH_RET_CODES = {10002: "request timestamp outside recv_window (check the machine clock / NTP)",
                  10003: "API key is invalid", 10004: "signature rejected", 10005: "permission denied for this key",
                  10007: "user authentication failed", 33004: "API key expired"}
#: retCode of a create whose orderLinkId already exists (a retried create that had reached the venue).
RET_DUPLICATE_LINK_ID = 110072
#: retCodes of amend/cancel on an order the venue no longer holds (filled or cancelled meanwhile).
RET_ORDER_GONE = (110001, 110008, 110010)
#: retCodes worth retrying (rate limit hit, venue busy).
RET_RETRY = (10006, 10016, 10429)

#: Endpoint class of each path: each class has its own token bucket.
ENDPOINT_CLASS = {
    "/v5/order/create": "order", "/v5/order/amend": "order", "/v5/order/cancel": "order",
    "/v5/order/cancel-all": "order", "/v5/order/realtime": "query", "/v5/position/list": "query",
}


class VenueError(MmlabError):
    """The venue answered a request with an error (retCode != 0) or could not be reached after the retries."""

    def __init__(self, msg: str, *, ret_code: int | None = None, status: int | None = None):
        super().__init__(msg)
        self.ret_code = ret_code
        self.status = status


class AuthRejected(VenueError):
    """The venue rejected our key, signature or timestamp: real trading halts."""


@dataclass(frozen=True)
class Credentials:
    """API key and secret. ``repr`` and ``str`` never show the secret."""

    api_key: str
    api_secret: str

    @classmethod
    def from_env(cls, environ=None) -> Credentials:
        env = os.environ if environ is None else environ
        key, secret = env.get(ENV_KEY, ""), env.get(ENV_SECRET, "")
        if not key or not secret:
            missing = [n for n, v in ((ENV_KEY, key), (ENV_SECRET, secret)) if not v]
            raise ConfigError(f"real mode needs the environment variables {' and '.join(missing)} (API key and "
                              "secret of the venue account); they are read from the environment only")
        return cls(key, secret)

    def __repr__(self) -> str:
        return f"Credentials(api_key='{self.api_key[:4]}...', api_secret='***')"

    __str__ = __repr__


def sign(secret: str, timestamp_ms: int, api_key: str, recv_window_ms: int, payload: str) -> str:
    """Bybit v5 REST signature: hex HMAC-SHA256 of ``timestamp + api_key + recv_window + payload``."""
    msg = f"{int(timestamp_ms)}{api_key}{int(recv_window_ms)}{payload}"
    return hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()


def ws_auth_args(creds: Credentials, expires_ms: int) -> list:
    """``args`` of the private websocket ``auth`` op: key, expiry (ms) and HMAC-SHA256 of ``GET/realtime<expires>``."""
    sig = hmac.new(creds.api_secret.encode(), f"GET/realtime{int(expires_ms)}".encode(), hashlib.sha256).hexdigest()
    return [creds.api_key, int(expires_ms), sig]


class TokenBucket:
    """``rate_per_s`` tokens per second, at most ``burst`` stored; :meth:`take` waits for a token (thread-safe)."""

    def __init__(self, rate_per_s: float, burst: float | None = None, clock=time.monotonic, sleep=time.sleep):
        self.rate = float(rate_per_s)
        self.burst = float(burst if burst is not None else max(rate_per_s, 1.0))
        self.tokens = self.burst
        self.clock = clock
        self.sleep = sleep
        self.t = clock()
        self.lock = threading.Lock()
        self.waited_s = 0.0

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now

    def try_take(self) -> bool:
        """Take a token if one is there (no wait)."""
        with self.lock:
            self._refill()
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False

    def take(self) -> None:
        """Take a token, waiting until one is there."""
        while True:
            with self.lock:
                self._refill()
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                wait = (1.0 - self.tokens) / self.rate
            self.waited_s += wait
            self.sleep(wait)


class BybitRest:
    """Signed Bybit v5 REST client (blocking; the runner calls it from a worker thread).

    Parameters
    ----------
    creds : Credentials
    base_url : str
        REST base, e.g. ``https://api-testnet.bybit.com`` (tests: the fake venue's loopback address).
    recv_window_ms : int
        ``X-BAPI-RECV-WINDOW``.
    retries : int
        Further attempts after a 5xx, a network error or a busy retCode; each resends the identical body.
    rate_per_s : dict
        Token-bucket rate of each endpoint class (``order``, ``query``).
    log : callable
        ``log(event: dict)`` receives one record per request (never the key, secret or signature).
    """

    def __init__(self, creds: Credentials, base_url: str, *, recv_window_ms: int = 5000, timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.2, rate_per_s: dict | None = None, log=None,
                 clock_ms=None):
        self._creds = creds
        self.base_url = base_url.rstrip("/")
        self.recv_window_ms = int(recv_window_ms)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        rates = {"order": 10.0, "query": 10.0, **(rate_per_s or {})}
        self.buckets = {k: TokenBucket(v) for k, v in rates.items()}
        self.log = log or (lambda event: None)
        self.clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.n_requests = 0
        self.n_retries = 0

    def _headers(self, payload: str) -> dict:
        ts = int(self.clock_ms())
        return {"X-BAPI-API-KEY": self._creds.api_key, "X-BAPI-TIMESTAMP": str(ts),
                "X-BAPI-RECV-WINDOW": str(self.recv_window_ms),
                "X-BAPI-SIGN": sign(self._creds.api_secret, ts, self._creds.api_key, self.recv_window_ms, payload),
                "Content-Type": "application/json"}

    def request(self, method: str, path: str, params: dict) -> dict:
        """Send one signed request (retrying transient failures with the same body); returns the ``result``.

        Raises :class:`AuthRejected` on key/signature/timestamp errors and :class:`VenueError` on any other
        retCode != 0 (the error carries ``ret_code``) or when the retries are exhausted.
        """
        bucket = self.buckets[ENDPOINT_CLASS.get(path, "query")]
        if method == "GET":
            payload = urllib.parse.urlencode(params)
            url = f"{self.base_url}{path}" + (f"?{payload}" if payload else "")
            body = None
        else:
            payload = json.dumps(params, separators=(",", ":"))
            url = f"{self.base_url}{path}"
            body = payload.encode()
        link = params.get("orderLinkId")
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.n_retries += 1
                time.sleep(self.backoff_s * (2 ** (attempt - 1)))
            bucket.take()
            # A fresh timestamp and signature per attempt: a retry must pass the venue's recv_window check.
            req = urllib.request.Request(url, data=body, method=method, headers=self._headers(payload))
            self.n_requests += 1
            t0 = time.perf_counter()
            status, doc = None, None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                    status = r.status
                    doc = json.loads(r.read() or b"{}")
            except urllib.error.HTTPError as exc:
                status = exc.code
                last = f"HTTP {exc.code}"
            except (OSError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            rec = {"event": "rest", "method": method, "path": path, "attempt": attempt, "status": status,
                   "order_link_id": link, "ms": round((time.perf_counter() - t0) * 1e3, 3)}
            if doc is None:
                rec["error"] = last
                self.log(rec)
                if status is not None and status < 500:
                    raise VenueError(f"{method} {path} answered HTTP {status}; check the endpoint "
                                     f"({self.base_url}) and the request", status=status)
                continue
            code = int(doc.get("retCode", -1))
            rec["ret_code"] = code
            if code != 0:
                rec["ret_msg"] = str(doc.get("retMsg", ""))[:200]
            self.log(rec)
            if code == 0:
                return doc.get("result") or {}
            msg = str(doc.get("retMsg", ""))
            if code in AUTH_RET_CODES:
                raise AuthRejected(f"{method} {path}: venue rejected the request, retCode {code} "
                                   f"({AUTH_RET_CODES[code]}): check {ENV_KEY}/{ENV_SECRET}, the key's permissions, "
                                   f"[live] real_env and the machine clock", ret_code=code, status=status)
            if code in RET_RETRY:
                last = f"retCode {code} {msg}"
                continue
            raise VenueError(f"{method} {path} (orderLinkId={link}): retCode {code} {msg}", ret_code=code,
                             status=status)
        raise VenueError(f"{method} {path} (orderLinkId={link}) failed after {self.retries + 1} attempts ({last}); "
                         f"the venue at {self.base_url} is unreachable or failing", status=None)

    # ---------------------------------------------------------------------------------------- orders

    def create_order(self, *, category: str, symbol: str, side: str, qty: str, price: str, order_link_id: str,
                     post_only: bool = True, reduce_only: bool = False) -> dict:
        """``POST /v5/order/create`` (Limit). A retry whose first attempt reached the venue meets retCode 110072
        (duplicate orderLinkId): the existing order is looked up and returned, so no second order exists."""
        params = {"category": category, "symbol": symbol, "side": side, "orderType": "Limit", "qty": qty,
                  "price": price, "timeInForce": "PostOnly" if post_only else "GTC", "orderLinkId": order_link_id,
                  "reduceOnly": bool(reduce_only)}
        try:
            return self.request("POST", "/v5/order/create", params)
        except VenueError as exc:
            if exc.ret_code != RET_DUPLICATE_LINK_ID:
                raise
            rows = self.open_orders(category=category, symbol=symbol, order_link_id=order_link_id)
            if rows:
                return {"orderId": rows[0]["orderId"], "orderLinkId": order_link_id, "duplicate": True}
            return {"orderId": "", "orderLinkId": order_link_id, "duplicate": True}

    def amend_order(self, *, category: str, symbol: str, order_link_id: str, qty: str | None = None,
                    price: str | None = None) -> dict:
        """``POST /v5/order/amend`` by orderLinkId."""
        params = {"category": category, "symbol": symbol, "orderLinkId": order_link_id}
        if qty is not None:
            params["qty"] = qty
        if price is not None:
            params["price"] = price
        return self.request("POST", "/v5/order/amend", params)

    def cancel_order(self, *, category: str, symbol: str, order_link_id: str) -> dict:
        """``POST /v5/order/cancel`` by orderLinkId."""
        return self.request("POST", "/v5/order/cancel",
                            {"category": category, "symbol": symbol, "orderLinkId": order_link_id})

    def cancel_all(self, *, category: str, symbol: str) -> dict:
        """``POST /v5/order/cancel-all`` of one symbol."""
        return self.request("POST", "/v5/order/cancel-all", {"category": category, "symbol": symbol})

    def open_orders(self, *, category: str, symbol: str, order_link_id: str | None = None) -> list[dict]:
        """``GET /v5/order/realtime``: the symbol's open orders (every page)."""
        out, cursor = [], ""
        while True:
            params = {"category": category, "symbol": symbol, "openOnly": 0, "limit": 50}
            if order_link_id:
                params["orderLinkId"] = order_link_id
            if cursor:
                params["cursor"] = cursor
            res = self.request("GET", "/v5/order/realtime", params)
            out += list(res.get("list") or [])
            cursor = res.get("nextPageCursor") or ""
            if not cursor or order_link_id:
                return out

    def positions(self, *, category: str, symbol: str) -> list[dict]:
        """``GET /v5/position/list`` of one symbol."""
        return list(self.request("GET", "/v5/position/list", {"category": category, "symbol": symbol}).get("list")
                    or [])
