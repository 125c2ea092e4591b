"""A local Bybit v5 private venue for tests of real mode: real HTTP (asyncio streams) and a real websocket
(``websockets``) over loopback, run in a background thread with its own event loop.

It implements the documented request/response shapes of the endpoints real mode uses (``/v5/order/create``,
``amend``, ``cancel``, ``cancel-all``, ``/v5/order/realtime``, ``/v5/position/list``, the private websocket
``auth`` and ``subscribe`` ops and the ``order`` / ``execution`` / ``position`` topics), verifies every signature
and timestamp (a bad one gets Bybit's retCode/retMsg), keeps the book of our orders and a position, and injects
faults: 5xx answers (before or after the request took effect), rejected signatures, delays and dropped
websocket connections.

>>> v = FakeBybit(api_key="k", api_secret="s").start()
>>> v.rest_url.startswith("http://127.0.0.1:"), v.ws_url.endswith("/v5/private")
(True, True)
>>> v.close()
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}


@dataclass
class Faults:
    """Faults to inject; counters decrease as they are used.

    ``http_5xx_before``: the next N order requests answer 503 without taking effect. ``http_5xx_after``: the next N
    order requests take effect, then answer 502 (a gateway timing out after the venue accepted: the retry must
    not duplicate). ``reject_signature``: every signed request / auth answers as if the signature were wrong.
    ``delay_s``: sleep before answering each REST request. ``drop_ws_after``: close each private websocket
    connection after this many pushed messages (0 = never).
    """

    http_5xx_before: int = 0
    http_5xx_after: int = 0
    reject_signature: bool = False
    delay_s: float = 0.0
    drop_ws_after: int = 0


@dataclass
class VenueOrder:
    order_id: str
    order_link_id: str
    symbol: str
    side: str
    price: str
    qty: float
    time_in_force: str
    reduce_only: bool
    status: str = "New"
    cum_exec_qty: float = 0.0
    reject_reason: str = "EC_NoError"
    created_ms: int = 0
    updated_ms: int = 0

    @property
    def leaves_qty(self) -> float:
        return 0.0 if self.status in ("Filled", "Cancelled", "Rejected") else round(self.qty - self.cum_exec_qty, 12)

    def row(self) -> dict:
        return {"category": "linear", "symbol": self.symbol, "orderId": self.order_id,
                "orderLinkId": self.order_link_id, "side": self.side, "orderType": "Limit", "price": self.price,
                "qty": _num(self.qty), "timeInForce": self.time_in_force, "reduceOnly": self.reduce_only,
                "orderStatus": self.status, "leavesQty": _num(self.leaves_qty), "cumExecQty": _num(self.cum_exec_qty),
                "avgPrice": self.price if self.cum_exec_qty else "0", "rejectReason": self.reject_reason,
                "createdTime": str(self.created_ms), "updatedTime": str(self.updated_ms)}


def _num(x: float) -> str:
    return f"{x:.12g}"


@dataclass
class FakeBybit:
    """The fake venue. ``start()`` serves on loopback ports; inspect ``orders``, ``positions`` and ``requests``."""

    api_key: str = "fake-key"
    api_secret: str = "fake-secret"
    faults: Faults = field(default_factory=Faults)
    best: dict = field(default_factory=dict)  # symbol -> (best bid, best ask) for the PostOnly check
    orders: dict = field(default_factory=dict)  # orderId -> VenueOrder
    positions: dict = field(default_factory=dict)  # symbol -> signed size (base units)
    requests: list = field(default_factory=list)  # (method, path, params, retCode, http status)
    ws_received: list = field(default_factory=list)

    def __post_init__(self):
        self._ids = itertools.count(1)
        self._exec = itertools.count(1)
        self._conns: set = set()
        self._loop = None
        self.ws_connections = 0
        self.auth_ok = 0

    # -------------------------------------------------------------------------------------------- serve

    def start(self) -> FakeBybit:
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-bybit", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    async def _serve(self):
        import websockets

        self._http = await asyncio.start_server(self._http_conn, "127.0.0.1", 0)
        self._ws = await websockets.serve(self._ws_conn, "127.0.0.1", 0, compression=None, ping_interval=None)
        hp = self._http.sockets[0].getsockname()[1]
        wp = next(iter(self._ws.sockets)).getsockname()[1]
        self.rest_url = f"http://127.0.0.1:{hp}"
        self.ws_url = f"ws://127.0.0.1:{wp}/v5/private"

    def close(self) -> None:
        async def stop():
            self._http.close()
            self._ws.close()
            for c in list(self._conns):
                await c.close()

        fut = asyncio.run_coroutine_threadsafe(stop(), self._loop)
        try:
            fut.result(5)
        except Exception:  # noqa: BLE001
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the venue's loop (thread-safe state change from a test); returns its result."""

        async def go():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(go(), self._loop).result(5)

    def drop_ws(self) -> None:
        """Close every private websocket connection (the client must reconnect and re-authenticate)."""

        async def go():
            for c in list(self._conns):
                c.transport.abort()  # no closing handshake: as a network failure looks to the client

        asyncio.run_coroutine_threadsafe(go(), self._loop).result(5)

    # --------------------------------------------------------------------------------------------- HTTP

    async def _http_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, v = h.decode("latin-1").split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", 0) or 0)
                body = (await reader.readexactly(n)).decode() if n else ""
                if self.faults.delay_s:
                    await asyncio.sleep(self.faults.delay_s)
                status, doc = self._handle(method, target, headers, body)
                data = json.dumps(doc).encode()
                writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def _reply(self, code: int, msg: str, result: dict | None = None) -> dict:
        return {"retCode": code, "retMsg": msg, "result": result if result is not None else {}, "retExtInfo": {},
                "time": self._now_ms()}

    def _check_auth(self, headers: dict, payload: str) -> dict | None:
        key = headers.get("x-bapi-api-key", "")
        ts = headers.get("x-bapi-timestamp", "")
        rw = headers.get("x-bapi-recv-window", "5000")
        got = headers.get("x-bapi-sign", "")
        if key != self.api_key:
            return self._reply(10003, "API key is invalid.")
        try:
            ts_i, rw_i = int(ts), int(rw)
        except ValueError:
            return self._reply(10001, "params error: X-BAPI-TIMESTAMP / X-BAPI-RECV-WINDOW must be integers")
        now = self._now_ms()
        if not (now - rw_i <= ts_i < now + 1000):
            return self._reply(10002, f"invalid request, please check your server timestamp or recv_window param. "
                                      f"req_timestamp[{ts_i}],server_timestamp[{now}],recv_window[{rw_i}]")
        origin = f"{ts_i}{key}{rw_i}{payload}"
        want = hmac.new(self.api_secret.encode(), origin.encode(), hashlib.sha256).hexdigest()
        if self.faults.reject_signature or not hmac.compare_digest(want, got):
            return self._reply(10004, f"error sign! origin_string[{origin}]")
        return None

    def _handle(self, method: str, target: str, headers: dict, body: str) -> tuple[int, dict]:
        url = urllib.parse.urlsplit(target)
        path = url.path
        if method == "GET":
            payload = url.query
            params = dict(urllib.parse.parse_qsl(url.query))
        else:
            payload = body
            try:
                params = json.loads(body or "{}")
            except ValueError:
                params = None
        handlers = {("POST", "/v5/order/create"): self._create, ("POST", "/v5/order/amend"): self._amend,
                    ("POST", "/v5/order/cancel"): self._cancel, ("POST", "/v5/order/cancel-all"): self._cancel_all,
                    ("GET", "/v5/order/realtime"): self._realtime, ("GET", "/v5/position/list"): self._position}
        fn = handlers.get((method, path))
        if fn is None:
            self.requests.append((method, path, params, None, 404))
            return 404, {"retCode": 404, "retMsg": "Not Found"}
        is_order = path.startswith("/v5/order/") and method == "POST"
        if is_order and self.faults.http_5xx_before > 0:
            self.faults.http_5xx_before -= 1
            self.requests.append((method, path, params, None, 503))
            return 503, {"retCode": 10016, "retMsg": "Service Unavailable"}
        bad = self._check_auth(headers, payload)
        if bad is None and not isinstance(params, dict):
            bad = self._reply(10001, "params error: body is not a JSON object")
        doc = bad if bad is not None else fn(params)
        status = 200
        if is_order and bad is None and self.faults.http_5xx_after > 0:
            self.faults.http_5xx_after -= 1
            status, doc = 502, {"retCode": 10016, "retMsg": "Bad Gateway"}
        self.requests.append((method, path, params, doc.get("retCode"), status))
        return status, doc

    # ------------------------------------------------------------------------------------------- orders

    def _by_link(self, symbol: str, link: str) -> VenueOrder | None:
        for o in self.orders.values():
            if o.order_link_id == link and o.symbol == symbol:
                return o
        return None

    def _find(self, p: dict) -> VenueOrder | None:
        if p.get("orderId"):
            o = self.orders.get(p["orderId"])
            return o if o is not None and o.symbol == p.get("symbol") else None
        return self._by_link(p.get("symbol", ""), p.get("orderLinkId", ""))

    def _create(self, p: dict) -> dict:
        for k in ("category", "symbol", "side", "orderType", "qty"):
            if not p.get(k):
                return self._reply(10001, f"params error: {k} is required")
        if p["side"] not in ("Buy", "Sell"):
            return self._reply(10001, f"params error: side invalid: {p['side']}")
        link = p.get("orderLinkId") or ""
        if len(link) > 36:
            return self._reply(10001, "params error: orderLinkId is too long (max 36)")
        if link and any(o.order_link_id == link for o in self.orders.values()):
            return self._reply(110072, "OrderLinkedID is duplicate")
        try:
            qty = float(p["qty"])
            price = float(p.get("price") or 0)
        except ValueError:
            return self._reply(10001, "params error: qty/price must be decimal strings")
        now = self._now_ms()
        o = VenueOrder(str(uuid.UUID(int=next(self._ids))), link, p["symbol"], p["side"], p.get("price", "0"), qty,
                       p.get("timeInForce", "GTC"), bool(p.get("reduceOnly", False)), created_ms=now, updated_ms=now)
        self.orders[o.order_id] = o
        bb, ba = self.best.get(o.symbol, (None, None))
        crosses = (o.side == "Buy" and ba is not None and price >= ba) or (o.side == "Sell" and bb is not None
                                                                           and price <= bb)
        pos = self.positions.get(o.symbol, 0.0)
        if o.time_in_force == "PostOnly" and crosses:
            o.status, o.reject_reason = "Cancelled", "EC_PostOnlyWillTakeLiquidity"
        elif o.reduce_only and (pos == 0 or (pos > 0) == (o.side == "Buy")):
            o.status, o.reject_reason = "Rejected", "EC_ReduceOnlySetButNotReducing"
        self._push("order", [o.row()])
        return self._reply(0, "OK", {"orderId": o.order_id, "orderLinkId": o.order_link_id})

    def _amend(self, p: dict) -> dict:
        o = self._find(p)
        if o is None or o.leaves_qty <= 0:
            return self._reply(110001, "order not exists or too late to replace")
        if p.get("price"):
            o.price = p["price"]
        if p.get("qty"):
            o.qty = float(p["qty"])
        o.updated_ms = self._now_ms()
        self._push("order", [o.row()])
        return self._reply(0, "OK", {"orderId": o.order_id, "orderLinkId": o.order_link_id})

    def _cancel(self, p: dict) -> dict:
        o = self._find(p)
        if o is None or o.leaves_qty <= 0:
            return self._reply(110001, "order not exists or too late to cancel")
        o.status, o.updated_ms = "Cancelled", self._now_ms()
        self._push("order", [o.row()])
        return self._reply(0, "OK", {"orderId": o.order_id, "orderLinkId": o.order_link_id})

    def _cancel_all(self, p: dict) -> dict:
        rows = []
        for o in self.orders.values():
            if o.symbol == p.get("symbol") and o.leaves_qty > 0:
                o.status, o.updated_ms = "Cancelled", self._now_ms()
                rows.append(o)
        if rows:
            self._push("order", [o.row() for o in rows])
        return self._reply(0, "OK", {"list": [{"orderId": o.order_id, "orderLinkId": o.order_link_id}
                                              for o in rows], "success": "1"})

    def _realtime(self, p: dict) -> dict:
        rows = [o.row() for o in self.orders.values() if o.symbol == p.get("symbol") and o.leaves_qty > 0
                and (not p.get("orderLinkId") or o.order_link_id == p["orderLinkId"])]
        return self._reply(0, "OK", {"list": rows, "nextPageCursor": "", "category": p.get("category", "linear")})

    def _position(self, p: dict) -> dict:
        sym = p.get("symbol", "")
        size = self.positions.get(sym, 0.0)
        row = {"symbol": sym, "side": "Buy" if size > 0 else ("Sell" if size < 0 else ""), "size": _num(abs(size)),
               "avgPrice": "0", "positionIdx": 0, "updatedTime": str(self._now_ms())}
        return self._reply(0, "OK", {"list": [row], "nextPageCursor": "", "category": p.get("category", "linear")})

    # ------------------------------------------------------------------------------------ venue actions

    def add_foreign_order(self, symbol: str, side: str, price: str, qty: float, link: str = "") -> str:
        """An open order we did not place in this session (placed by hand or left over): reconciliation finds it."""

        def go():
            now = self._now_ms()
            o = VenueOrder(str(uuid.UUID(int=next(self._ids))), link, symbol, side, price, qty, "GTC", False,
                           created_ms=now, updated_ms=now)
            self.orders[o.order_id] = o
            return o.order_id

        return self.call(go)

    def remove_order(self, order_id: str) -> None:
        """Forget an order without telling anyone (as if its cancel message was lost)."""
        self.call(lambda: self.orders.pop(order_id, None))

    def fill(self, order_id: str, qty: float, price: str | None = None) -> None:
        """Fill ``qty`` of an order as maker: position, ``execution`` + ``order`` + ``position`` pushes."""

        def go():
            o = self.orders[order_id]
            q = min(qty, o.leaves_qty)
            o.cum_exec_qty = round(o.cum_exec_qty + q, 12)
            o.status = "Filled" if o.leaves_qty <= 1e-12 else "PartiallyFilled"
            o.updated_ms = now = self._now_ms()
            px = price or o.price
            sgn = 1.0 if o.side == "Buy" else -1.0
            self.positions[o.symbol] = round(self.positions.get(o.symbol, 0.0) + sgn * q, 12)
            fee = -0.0001 * q * float(px)
            self._push("execution", [{"category": "linear", "symbol": o.symbol, "execId": str(next(self._exec)),
                                      "execPrice": px, "execQty": _num(q), "execFee": _num(fee), "feeRate": "-0.0001",
                                      "isMaker": True, "orderId": o.order_id, "orderLinkId": o.order_link_id,
                                      "side": o.side, "execTime": str(now), "seq": next(self._exec)}])
            self._push("order", [o.row()])
            size = self.positions[o.symbol]
            self._push("position", [{"category": "linear", "symbol": o.symbol, "size": _num(abs(size)),
                                     "side": "Buy" if size > 0 else ("Sell" if size < 0 else ""),
                                     "updatedTime": str(now)}])

        self.call(go)

    def open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        return [o for o in list(self.orders.values()) if o.leaves_qty > 0 and (symbol is None or o.symbol == symbol)]

    # ---------------------------------------------------------------------------------------- websocket

    def _push(self, topic: str, data: list) -> None:
        msg = json.dumps({"id": uuid.uuid4().hex, "topic": topic, "creationTime": self._now_ms(), "data": data})
        for c in list(self._conns):
            if topic in c.topics:
                asyncio.get_running_loop().create_task(self._send(c, msg))

    async def _send(self, c, msg: str) -> None:
        try:
            await c.send(msg)
        except Exception:  # noqa: BLE001 - a closed client reconnects
            return
        c.pushed += 1
        if self.faults.drop_ws_after and c.pushed >= self.faults.drop_ws_after:
            c.transport.abort()

    async def _ws_conn(self, ws) -> None:
        self.ws_connections += 1
        ws.topics, ws.pushed, ws.authed = set(), 0, False
        conn_id = uuid.uuid4().hex
        try:
            async for raw in ws:
                self.ws_received.append(raw)
                try:
                    m = json.loads(raw)
                except ValueError:
                    continue
                op = m.get("op")
                if op == "ping":
                    await ws.send(json.dumps({"success": True, "ret_msg": "pong", "conn_id": conn_id, "op": "ping"}))
                elif op == "auth":
                    ok, msg = self._ws_auth(m.get("args") or [])
                    ws.authed = ok
                    if ok:
                        self.auth_ok += 1
                    await ws.send(json.dumps({"success": ok, "ret_msg": msg, "op": "auth", "conn_id": conn_id,
                                              "req_id": m.get("req_id", "")}))
                    if not ok:
                        await ws.close()
                        return
                elif op == "subscribe":
                    if not ws.authed:
                        await ws.send(json.dumps({"success": False, "ret_msg": "Request not authorized",
                                                  "op": "subscribe", "conn_id": conn_id}))
                        continue
                    self._conns.add(ws)
                    ws.topics.update(m.get("args") or [])
                    await ws.send(json.dumps({"success": True, "ret_msg": "", "op": "subscribe", "conn_id": conn_id,
                                              "req_id": m.get("req_id", "")}))
        except Exception:  # noqa: BLE001 - the connection closed
            pass
        finally:
            self._conns.discard(ws)

    def _ws_auth(self, args: list) -> tuple[bool, str]:
        if len(args) != 3:
            return False, "Params Error"
        key, expires, got = args
        if key != self.api_key:
            return False, "Invalid apikey"
        try:
            expires = int(expires)
        except (TypeError, ValueError):
            return False, "Params Error"
        if expires <= self._now_ms():
            return False, "Params Error: request expired"
        want = hmac.new(self.api_secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
        if self.faults.reject_signature or not hmac.compare_digest(want, str(got)):
            return False, "Signature verification failed"
        return True, ""
