"""Real mode of a live session: the checks that must pass before anything is sent (``--real``, the confirmation
flag, configured limits, keys in the environment, a Bybit linear venue), then the venue side of the runner:
reconciliation at start and every ``live.real_reconcile_interval_s``, the private websocket, a sender that
routes each step's decision actions to the venue in order, and cancel-all at shutdown.

The strategy's order state is the paper exchange's (the same kernels as the backtest); the venue receives the
same actions with deterministic ``orderLinkId`` s. Venue fills and position are logged (``real.jsonl``),
reconciled and bound by the limits.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time

import numpy as np

from live.real.order_manager import JsonlLog, OrderManager, RealLimits, session_tag
from live.real.private_ws import PrivateStream
from live.real.reconcile import reconcile
from live.real.rest import (
    ENV_KEY,
    ENV_SECRET,
    REAL_ENVS,
    AuthRejected,
    BybitRest,
    Credentials,
    VenueError,
)
from mmlab.errors import ConfigError

#: Flag that must accompany ``--real``.
CONFIRM_FLAG = "--i-understand-this-trades-real-money"
#: Venues real mode supports.
REAL_VENUES = ("bybit-linear",)


def check_real_mode(cfg, *, real: bool, confirmed: bool, environ=None) -> tuple[Credentials, RealLimits]:
    """Refuse real mode unless every precondition holds; returns the credentials and limits."""
    if not real:
        raise ConfigError("real mode needs --real")
    if not confirmed:
        raise ConfigError(f"real mode refused: --real trades real money on the venue; add {CONFIRM_FLAG} to confirm "
                          f"(and check [live] real_env = {cfg.live.real_env!r})")
    if cfg.live.venue not in REAL_VENUES:
        raise ConfigError(f"real mode refused: [live] venue = {cfg.live.venue!r} has no real-mode adapter; use one of "
                          f"{REAL_VENUES}")
    limits = RealLimits.from_live_config(cfg.live)
    creds = Credentials.from_env(environ)
    return creds, limits


class RealSession:
    """The venue side of a live runner in real mode."""

    def __init__(self, cfg, creds: Credentials, limits: RealLimits, *, out_dir, clock_ns=time.time_ns):
        lc = cfg.live
        self.lc = lc
        rest_url, ws_url = REAL_ENVS[lc.real_env]
        self.rest_url = lc.real_rest_url or rest_url
        self.ws_url = lc.real_ws_url or ws_url
        self._creds = creds
        self.limits = limits
        self.log = JsonlLog(os.path.join(out_dir, "real.jsonl"), secrets=(creds.api_secret, creds.api_key))
        self.tag = session_tag(cfg.config_id, clock_ns())
        self.rest = BybitRest(creds, self.rest_url, recv_window_ms=lc.real_recv_window_ms,
                              timeout_s=lc.connect_timeout_s, log=self.log)
        self.om = None
        self.stream = None
        self.requests: collections.deque = collections.deque()
        self.wake = asyncio.Event()
        self.tasks: list = []
        self.reconciles: list[dict] = []
        self.closing = False

    @property
    def halted(self) -> str | None:
        return self.om.halted if self.om is not None else None

    async def start(self, runner) -> None:
        """Order manager for the runner's symbols, first reconciliation, private stream, sender, reconciler."""
        lc = self.lc
        specs = runner.specs
        self.om = OrderManager(self.rest, [s.symbol for s in specs], [s.tick_size for s in specs],
                               [s.lot_size for s in specs], self.limits, tag=self.tag, log=self.log)
        self.log({"event": "start", "env": lc.real_env, "rest_url": self.rest_url, "ws_url": self.ws_url,
                  "tag": self.tag, "limits": vars(self.limits) if hasattr(self.limits, "__dict__") else None})
        await self._reconcile()
        self.stream = PrivateStream(self._creds, self.ws_url, self.om.on_stream, on_auth_failed=self._ws_auth_failed,
                                    log=self.log, ping_interval_s=lc.ping_interval_s,
                                    backoff_initial_s=lc.backoff_initial_s, backoff_max_s=lc.backoff_max_s,
                                    connect_timeout_s=lc.connect_timeout_s)
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.stream.run()), loop.create_task(self._sender()),
                      loop.create_task(self._reconciler())]

    def _ws_auth_failed(self, reason: str) -> None:
        self.om.halt(f"private websocket auth rejected ({reason}): check {ENV_KEY}/{ENV_SECRET} and the clock")

    async def _reconcile(self) -> None:
        if self.om.halted:
            return
        try:
            rep = await asyncio.to_thread(reconcile, self.om, policy=self.lc.real_reconcile_policy)
            self.reconciles.append(rep)
        except AuthRejected as exc:
            self.om.halt(str(exc))
        except VenueError as exc:
            self.log({"event": "reconcile_failed", "error": str(exc)[:300]})

    async def _reconciler(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.lc.real_reconcile_interval_s)
            if not self.closing:
                await self._reconcile()

    def on_step(self, out: dict) -> None:
        """Queue the decision actions of one paper step (runner thread; no I/O)."""
        if self.om is None or self.om.halted or not out.get("decisions"):
            return
        dec = np.concatenate(out["decisions"])
        if not int(dec["n_actions"].sum()):
            return
        acts = np.concatenate(out["dec_actions"])
        j = 0
        for r in dec:
            n = int(r["n_actions"])
            if n:
                self.requests.extend(self.om.route_actions(int(r["symbol_id"]), acts[j:j + n]))
                j += n
        self.wake.set()

    async def _sender(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.requests and not self.om.halted:
                req = self.requests.popleft()
                await asyncio.to_thread(self.om.execute, req)
            if self.om.halted:
                self.requests.clear()
            if self.closing and not self.requests:
                return

    async def close(self) -> dict:
        """Send what is queued, cancel everything at the venue, reconcile once more, stop; returns the summary."""
        self.closing = True
        self.wake.set()
        sender = self.tasks[1] if len(self.tasks) > 1 else None
        if sender is not None:
            try:
                await asyncio.wait_for(sender, timeout=30.0)
            except (TimeoutError, asyncio.CancelledError):
                pass
        if self.om is not None and not self.om.halted:
            try:
                await asyncio.to_thread(self.om.cancel_all)
            except (AuthRejected, VenueError) as exc:
                self.log({"event": "cancel_all_failed", "error": str(exc)[:300]})
            await self._reconcile()
        if self.stream is not None:
            self.stream.stop()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        snap = self.om.snapshot() if self.om is not None else {}
        summary = {"env": self.lc.real_env, "rest_url": self.rest_url, "tag": self.tag, **snap,
                   "requests": self.rest.n_requests, "retries": self.rest.n_retries,
                   "reconciles": len(self.reconciles),
                   "ws_connections": self.stream.connections if self.stream else 0,
                   "foreign_canceled": sum(r["canceled_foreign"] for r in self.reconciles)}
        self.log({"event": "stop", "halted": summary.get("halted")})
        self.log.close()
        return summary
