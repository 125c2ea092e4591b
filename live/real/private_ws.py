"""Bybit v5 private websocket (real mode): ``auth`` op, subscription to ``order`` / ``execution`` / ``position``,
keepalive pings and reconnection with exponential backoff (re-authenticating on every connection).

Messages of the subscribed topics go to ``on_message(topic, rows)``; an auth failure stops the client and calls
``on_auth_failed(reason)`` (the order manager halts: a retry would fail the same way).
"""

from __future__ import annotations

import asyncio
import json
import time

from live.real.rest import Credentials, ws_auth_args

#: Topics real mode subscribes to.
TOPICS = ("order", "execution", "position")


class PrivateStream:
    """One private websocket session (``await stream.run()`` until :meth:`stop`)."""

    def __init__(self, creds: Credentials, url: str, on_message, *, on_auth_failed=None, log=None,
                 ping_interval_s: float = 20.0, backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 connect_timeout_s: float = 10.0, expires_in_ms: int = 10_000):
        self._creds = creds
        self.url = url
        self.on_message = on_message
        self.on_auth_failed = on_auth_failed or (lambda reason: None)
        self.log = log or (lambda event: None)
        self.ping_interval_s = ping_interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.connect_timeout_s = connect_timeout_s
        self.expires_in_ms = expires_in_ms
        self.stopping = False
        self.authenticated = asyncio.Event()
        self.connections = 0
        self.reconnects = 0
        self.messages = 0
        self.auth_failed: str | None = None
        self._ws = None

    def stop(self) -> None:
        self.stopping = True
        ws = self._ws
        if ws is not None:
            asyncio.get_running_loop().create_task(ws.close())

    async def run(self) -> None:
        import websockets

        delay = self.backoff_initial_s
        while not self.stopping and self.auth_failed is None:
            try:
                async with websockets.connect(self.url, open_timeout=self.connect_timeout_s, ping_interval=None,
                                              compression=None, max_size=None) as ws:
                    self._ws = ws
                    self.connections += 1
                    if self.connections > 1:
                        self.reconnects += 1
                    expires = time.time_ns() // 1_000_000 + self.expires_in_ms
                    await ws.send(json.dumps({"op": "auth", "args": ws_auth_args(self._creds, expires)}))
                    ack = json.loads(await asyncio.wait_for(ws.recv(), self.connect_timeout_s))
                    if not ack.get("success"):
                        self.auth_failed = str(ack.get("ret_msg") or "auth rejected")
                        self.log({"event": "ws_auth_failed", "ret_msg": self.auth_failed})
                        self.on_auth_failed(self.auth_failed)
                        return
                    await ws.send(json.dumps({"op": "subscribe", "args": list(TOPICS)}))
                    self.log({"event": "ws_connected", "connection": self.connections})
                    self.authenticated.set()
                    delay = self.backoff_initial_s
                    pinger = asyncio.get_running_loop().create_task(self._ping(ws))
                    try:
                        async for raw in ws:
                            self._on_raw(raw)
                    finally:
                        pinger.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect below
                self.log({"event": "ws_error", "error": f"{type(exc).__name__}: {exc}"[:200]})
            finally:
                self._ws = None
                self.authenticated.clear()
            if self.stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2.0, self.backoff_max_s)

    async def _ping(self, ws) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)
            try:
                await ws.send('{"op":"ping"}')
            except Exception:  # noqa: BLE001 - the reader sees the closed connection
                return

    def _on_raw(self, raw) -> None:
        try:
            m = json.loads(raw)
        except ValueError:
            self.log({"event": "ws_garbage", "bytes": len(raw)})
            return
        topic = m.get("topic")
        if topic is None:
            if m.get("op") == "subscribe" and not m.get("success"):
                self.log({"event": "ws_subscribe_failed", "ret_msg": str(m.get("ret_msg"))[:200]})
            return
        self.messages += 1
        self.on_message(topic, m.get("data") or [])
