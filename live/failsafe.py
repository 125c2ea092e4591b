"""Fail-safe mode of a live session: a critical event routes every execution to the paper exchange for a
cooldown, then the session returns to its normal routing once the cause is gone.

Critical events (the ``reason`` label of ``fail_safe_switch_total``):

- ``real_auth``: real mode halted on a rejected key, signature or timestamp (the order manager's halt);
- ``real_rest``: a real-mode REST request failed after its retries (``venue_errors`` rose);
- ``reconnect_failures``: ``live.failsafe_reconnect_failures`` connection attempts in a row failed;
- ``parity_desync``: market rows arrived with an exchange time before the processed horizon (the live decisions
  no longer equal a backtest of the recording), or an external check called :meth:`FailSafe.trip`;
- ``stale_feed``: a symbol got no market data for ``live.failsafe_stale_ms`` (the hard limit; the ordinary
  ``live.stale_ms`` guard only halts quoting).

While active, the strategy keeps running on the paper exchange (its own guards still apply) and nothing is sent
to the venue; working venue orders are canceled on entry. After ``live.failsafe_cooldown_s`` the mode ends at
the first periodic check that finds no persistent cause (feed connected and fresh; in real mode a reconciliation
with the venue succeeds). Checks run periodically (``FailSafe.CHECK_NS``), never per frame.

>>> fs = FailSafe(cooldown_s=10.0)
>>> fs.trip("stale_feed", now_ns=0)
True
>>> fs.active, fs.update(5 * 10**9, {}, {}), fs.update(11 * 10**9, {}, {})
(True, None, 'exit')
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from mmlab.errors import ConfigError

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000

#: Reasons of a fail-safe switch (``fail_safe_switch_total{reason}``).
REASONS = ("real_auth", "real_rest", "reconnect_failures", "parity_desync", "stale_feed")


@dataclass
class FailSafe:
    """State of the fail-safe mode; :meth:`update` is called periodically with what happened and what holds."""

    cooldown_s: float = 300.0
    active: bool = False
    reason: str | None = None
    since_ns: int = 0
    until_ns: int = 0
    switches: collections.Counter = field(default_factory=collections.Counter)
    events: list = field(default_factory=list)  # {"event": "fail_safe_enter"|"fail_safe_rearm"|"fail_safe_exit", ...}
    active_ns: int = 0  # total time spent in fail-safe mode

    #: Period of the runner's health checks.
    CHECK_NS = 100 * NS_PER_MS

    def trip(self, reason: str, now_ns: int, detail: str = "") -> bool:
        """A critical event: enter the mode (True) or, when already in it, restart the cooldown (False)."""
        if reason not in REASONS:
            raise ConfigError(f"fail-safe reason {reason!r} unknown; use one of {REASONS}")
        self.until_ns = max(self.until_ns, int(now_ns) + int(self.cooldown_s * NS_PER_S))
        entered = not self.active
        if entered:
            self.switches[reason] += 1
            self.active, self.reason, self.since_ns = True, reason, int(now_ns)
        self.events.append({"event": "fail_safe_enter" if entered else "fail_safe_rearm", "ts_ns": int(now_ns),
                            "reason": reason, "detail": detail, "until_ns": self.until_ns})
        return entered

    def update(self, now_ns: int, events: dict[str, str], unhealthy: dict[str, str]) -> str | None:
        """Trip on each new critical event (``reason -> detail``); leave once the cooldown is over and no
        persistent cause (``unhealthy``) holds. Returns ``"enter"``, ``"exit"`` or None (no change)."""
        entered = False
        for reason, detail in events.items():
            entered |= self.trip(reason, now_ns, detail)
        if entered:
            return "enter"
        if self.active and not unhealthy and now_ns >= self.until_ns:
            self.active = False
            self.active_ns += int(now_ns) - self.since_ns
            self.events.append({"event": "fail_safe_exit", "ts_ns": int(now_ns), "reason": self.reason,
                                "detail": f"cooldown of {self.cooldown_s:g} s over and healthy"})
            self.reason = None
            return "exit"
        return None

    def summary(self, now_ns: int) -> dict:
        return {"active": self.active, "reason": self.reason, "switches": dict(self.switches),
                "switch_total": int(sum(self.switches.values())),
                "active_s": (self.active_ns + (int(now_ns) - self.since_ns if self.active else 0)) / NS_PER_S,
                "events": self.events[-100:]}


class FailSafeMonitor:
    """Derives the causes of :class:`FailSafe` from a :class:`live.runner.LiveRunner` (periodic, no I/O)."""

    def __init__(self, runner):
        lc = runner.lc
        self.runner = runner
        self.fs = FailSafe(cooldown_s=lc.failsafe_cooldown_s)
        self.stale_hard_ns = int(lc.failsafe_stale_ms * NS_PER_MS)
        self.max_reconnect_failures = int(lc.failsafe_reconnect_failures)
        self.next_ns = 0
        self._errors_at_connect = 0
        self._late_seen = 0
        self._venue_errors_seen = 0
        self._pending_manual: dict[str, str] = {}
        self._held: set[str] = set()
        self._probe = None  # real-mode recovery probe (an asyncio task)

    def trip(self, reason: str, detail: str = "") -> None:
        """Report a critical event found elsewhere (e.g. a parity check); applied at the next check."""
        if reason not in REASONS:
            raise ConfigError(f"fail-safe reason {reason!r} unknown; use one of {REASONS}")
        self._pending_manual[reason] = detail

    def causes(self, now_ns: int) -> tuple[dict[str, str], dict[str, str]]:
        """(new critical events, persistent causes that hold now), each ``reason -> detail``."""
        r = self.runner
        events = dict(self._pending_manual)
        self._pending_manual.clear()
        hold: dict[str, str] = {}
        # Reconnect failures in a row (reset whenever a connection is up).
        errors = int(r.counts["connect_errors"])
        if r.ws is not None:
            self._errors_at_connect = errors
        run = errors - self._errors_at_connect
        if self.max_reconnect_failures and run >= self.max_reconnect_failures:
            hold["reconnect_failures"] = f"{run} connection attempts in a row failed"
        # Hard staleness: no data of a symbol for failsafe_stale_ms (from the session start if none yet).
        if self.stale_hard_ns and r.adapter is not None:
            last = r.adapter.last_data_ns
            for i, sym in enumerate(r.symbols):
                t = int(last[i]) or int(r.t_start_ns)
                if now_ns - t > self.stale_hard_ns:
                    hold["stale_feed"] = f"{sym}: no market data for {(now_ns - t) / 1e9:.1f} s"
                    break
        # Rows behind the processed horizon: the live decisions would differ from a replay of the recording.
        late = int(r.paper.late_exch_events) if r.paper is not None else 0
        if late > self._late_seen:
            events["parity_desync"] = f"{late - self._late_seen} market rows arrived behind the processed horizon"
        self._late_seen = late
        real = r.real
        if real is not None and getattr(real, "om", None) is not None:
            if real.halted is not None:
                hold["real_auth"] = str(real.halted)[:200]
            errs = int(real.om.counts.get("venue_errors", 0))
            if errs > self._venue_errors_seen:
                events["real_rest"] = f"{errs - self._venue_errors_seen} REST request(s) failed after retries"
            self._venue_errors_seen = errs
        if "parity_desync" in events and r.rollout is not None:
            r.rollout.parity_failure(now_ns, events["parity_desync"])
        # A persistent cause is an event when it starts.
        for k, v in hold.items():
            if k not in self._held:
                events.setdefault(k, v)
        self._held = set(hold)
        return events, hold

    def check(self, now_ns: int) -> str | None:
        """One periodic check: returns ``"enter"``/``"exit"`` when the mode changed."""
        self.next_ns = now_ns + FailSafe.CHECK_NS
        events, hold = self.causes(now_ns)
        fs = self.fs
        if fs.active and "real_auth" in hold and now_ns >= fs.until_ns and self._probe is None:
            self._start_probe()
        change = fs.update(now_ns, events, hold)
        if change is not None:
            self._apply(change)
        return change

    def _apply(self, change: str) -> None:
        """Metrics, counters and log of a mode change; on entry in real mode, cancel every venue order."""
        r = self.runner
        fs = self.fs
        ev = fs.events[-1]
        r.metrics.fail_safe_active.set(1 if change == "enter" else 0)
        if change == "enter":
            r.metrics.fail_safe.labels(fs.reason).inc()
            r.counts[f"failsafe_{fs.reason}"] += 1
        r.server_log.append(f"fail-safe {change}: {ev['reason']} {ev.get('detail', '')}".rstrip())
        real = r.real
        if change == "enter" and real is not None and getattr(real, "om", None) is not None \
                and real.halted is None:
            import asyncio

            async def cancel_all():
                try:
                    await asyncio.to_thread(real.om.cancel_all)
                except Exception as exc:  # noqa: BLE001 - logged; the venue side is reconciled later
                    fs.events.append({"event": "cancel_all_failed", "error": f"{type(exc).__name__}: {exc}"[:300]})

            asyncio.get_running_loop().create_task(cancel_all())
        if change == "exit" and real is not None and getattr(real, "om", None) is not None \
                and real.halted is None:
            self._resend_working()

    def _resend_working(self) -> None:
        """Back from fail-safe in real mode: the venue gets the strategy's working paper orders again (PLACE
        requests with fresh orderLinkIds; later cancels and modifies of these orders follow them)."""
        import numpy as np

        from mmlab.types import ActionKind, OrderStatus, sim_action_dtype

        r = self.runner
        a = r.paper.a
        live_status = (int(OrderStatus.NEW), int(OrderStatus.PARTIALLY_FILLED))
        n = 0
        for s in range(len(r.symbols)):
            rows = []
            for j in range(int(a.ss[s]["n_local"])):
                o = a.orders[a.local_list[s, j]]
                if int(o["local_status"]) in live_status and float(o["local_leaves_qty"]) > 0:
                    rows.append((int(o["order_id"]), int(o["local_price_ticks"]), float(o["local_leaves_qty"]),
                                 int(o["order_seq"]), int(o["side"]), int(o["tif"]), int(o["order_type"])))
            if r.rollout is not None and r.rollout.canary:
                rows = [x for x in rows if r.rollout.route_by_seq.get((s, x[3]), 0)]
            if not rows:
                continue
            acts = np.zeros(len(rows), dtype=sim_action_dtype)
            for k, (oid, px, qty, _seq, side, tif, otype) in enumerate(rows):
                acts[k]["order_id"], acts[k]["price_ticks"], acts[k]["qty"] = oid, px, qty
                acts[k]["kind"], acts[k]["side"], acts[k]["tif"] = int(ActionKind.PLACE), side, tif
                acts[k]["order_type"], acts[k]["level"] = otype, -1
            r.real.requests.extend(r.real.om.route_actions(s, acts))
            n += len(rows)
        if n:
            r.real.wake.set()
        self.fs.events.append({"event": "real_resent_working", "ts_ns": r.clock_ns(), "orders": n})

    def _start_probe(self) -> None:
        """Real mode: after the cooldown, try one reconciliation with the venue; success clears the halt."""
        import asyncio

        real = self.runner.real
        om = real.om

        async def probe():
            from live.real.reconcile import reconcile

            reason = om.halted
            om.halted = None
            try:
                rep = await asyncio.to_thread(reconcile, om, policy=real.lc.real_reconcile_policy)
                real.reconciles.append(rep)
                self.fs.events.append({"event": "real_probe_ok", "ts_ns": self.runner.clock_ns()})
            except Exception as exc:  # noqa: BLE001 - any failure keeps the venue halted
                om.halted = om.halted or reason
                self.fs.events.append({"event": "real_probe_failed", "ts_ns": self.runner.clock_ns(),
                                       "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
                self.fs.until_ns = self.runner.clock_ns() + int(self.fs.cooldown_s * NS_PER_S)
            finally:
                self._probe = None

        self._probe = asyncio.get_running_loop().create_task(probe())
