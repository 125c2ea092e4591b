"""A/B and canary rollout on a live session, with the backtest harnesses' own functions.

A/B (``[live] ab_b_config`` / ``ab_b_set``): symbols are routed to bucket A or B by
:func:`mmlab.analysis.ab.route_symbols` (salted hash, split, whitelist, blacklist); a B symbol runs config B's
strategy parameters (its rows of the strategy parameter array), an A symbol config A's. Every
``ab_interval_s`` of processed time the per-bucket metrics of :func:`mmlab.analysis.ab.bucket_metrics` are
computed on the session's own fills, orders and decision ticks, and the four safety gates are evaluated with
:func:`mmlab.analysis.ab.evaluate_gates`; the first trip rolls back (every symbol back on A's parameters),
logged in ``rollout.jsonl`` and counted (``rollback_total{reason=<gate>}``, ``mode_switch_total{from_mode="ab",
to_mode="a"}``).

Canary (``[rollout] mode = "canary"|"full"``): each approved signal (an order the strategy sends) gets the
routing value of :func:`mmlab.hpo.canary.signal_hash_u` and a route from :func:`mmlab.hpo.canary.route_signals`
under the current mode: ``canary``/``full`` signals go to the venue in real mode, ``paper`` ones stay on the paper
exchange only (in paper mode the route is a label of the order and its fills). ``trades_opened_total{route}`` and
``mm_fills_total{route}`` count them. Every ``rollout.check_interval_s`` the guard rails of
:func:`mmlab.hpo.canary.supervise` run on the session's signals and trades (a trade is won when the mid
``winrate_horizon_ms`` after the fill is on its side of the fill price; parity failures come from
:meth:`LiveRollout.parity_failure`, which the fail-safe monitor calls on a parity desync); each new
``MODE_SWITCH`` changes the live mode, is logged and counted (``mode_switch_total``, ``rollback_total{reason}``).
While the fail-safe mode is active every signal routes to paper.
"""

from __future__ import annotations

import json

import numpy as np

from mmlab.errors import ConfigError
from mmlab.types import ActionKind, OrderEventKind

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000

#: Drift features a live session can compute at decision time.
LIVE_FEATURES = ("spread_ticks", "imbalance")

_SENT = int(OrderEventKind.SENT)
_PLACE = int(ActionKind.PLACE)


def config_b(cfg):
    """Config B of a live A/B: config A with B's ``[strategy]``/``[pipeline]`` (``ab_b_config``), then
    ``ab_b_set`` applied. None when no A/B is configured."""
    from mmlab.config import load_config

    lc = cfg.live
    if not lc.ab_b_config and not lc.ab_b_set:
        return None
    d = cfg.to_dict()
    if lc.ab_b_config:
        other = load_config(lc.ab_b_config).to_dict()
        d["strategy"], d["pipeline"] = other["strategy"], other["pipeline"]
    return load_config(d, overrides=list(lc.ab_b_set))


class LiveRollout:
    """A/B routing and canary routing of one :class:`live.runner.LiveRunner` (set up after the paper exchange)."""

    def __init__(self, runner):
        from mmlab.analysis.ab import ABConfig, default_gates, route_symbols
        from mmlab.hpo.canary import Mode

        self.runner = runner
        cfg, lc = runner.cfg, runner.lc
        self.symbols = list(runner.symbols)
        self.ticks = np.array([sp.tick_size for sp in runner.specs])
        self.metrics = runner.metrics
        self.log_f = open(runner.out / "rollout.jsonl", "w")  # noqa: SIM115 - open for the session, closed by close()
        self.t0_ns = None
        self.counts = {"mode_switch_total": 0, "rollback_total": 0}
        self.events: list[dict] = []
        # ---------------------------------------------------------------- A/B
        self.cfg_b = config_b(cfg)
        self.ab = None
        self.routing: dict[str, str] = {}
        self.rolled_back = None
        if self.cfg_b is not None:
            from mmlab.sim import engine

            engine.check_batch_configs([cfg, self.cfg_b], runner.strategy)
            self.ab = ABConfig(split_pct=lc.ab_split_pct, salt=lc.ab_salt, whitelist=tuple(lc.ab_whitelist),
                               blacklist=tuple(lc.ab_blacklist), interval_s=lc.ab_interval_s,
                               gates=default_gates(lc.ab_gate_duration_s), auto_rollback=lc.ab_auto_rollback)
            self.ab.validate()
            a = runner.paper.a
            need = int(runner.strategy.max_quotes(self.cfg_b))
            if need > len(a.quotes):
                raise ConfigError(f"[live] A/B config B quotes {need} levels, more than config A's buffers "
                                  f"({len(a.quotes)}); give config A at least as many levels (strategy.grid_num)")
            self.params_a = a.strat_params.copy()
            self.params_b = runner.strategy.build_params(self.cfg_b, runner.specs)
            self.routing = route_symbols(self.symbols, self.ab)
            for i, s in enumerate(self.symbols):
                if self.routing[s] == "B":
                    a.strat_params[i] = self.params_b[i]
                self.metrics.ab_bucket.labels(s).set(1 if self.routing[s] == "B" else 0)
            self.series: list[dict] = []
            self.next_ab_ns = None
            self._fills: list[dict] = []  # columns of fills since the interval start
            self._state: list[dict] = []
            self._labels: list[dict] = []
            self._last_state: dict[int, dict] = {}
            self.log({"event": "ab_start", "routing": self.routing, "config_b_id": self.cfg_b.config_id,
                      "split_pct": self.ab.split_pct, "gates": [g.describe() for g in self.ab.gates]})
        # ---------------------------------------------------------------- canary
        rc = cfg.rollout
        self.rc = rc
        self.start_mode = Mode[rc.mode.upper()]
        self.mode = self.start_mode
        self.canary = self.start_mode != Mode.DISABLED
        self.route_by_seq: dict[tuple[int, int], int] = {}
        self.route_by_id: dict[tuple[int, int], int] = {}
        if self.canary:
            bad = [f for f in rc.drift_features if f not in LIVE_FEATURES]
            if bad:
                raise ConfigError(f"[rollout] drift_features {bad} are not available live; a live session computes "
                                  f"{LIVE_FEATURES} at decision time")
            self.horizon_ns = int(rc.winrate_horizon_ms * NS_PER_MS)
            self.next_check_ns = None
            self._spread = np.zeros(len(self.symbols))
            self._imb = np.zeros(len(self.symbols))
            self._sig: dict[str, list] = {k: [] for k in ("ts", "u", "spread_ticks", "imbalance")}
            self._sig_index: dict[tuple[int, int], int] = {}
            self._sig_filled: list[bool] = []
            self._pending: list[tuple] = []  # trades waiting for the mid at fill + horizon
            self._trades: dict[str, list] = {k: [] for k in ("sig_ts", "u", "out_ts", "won", "markout")}
            self._mids: list[list] = [[] for _ in self.symbols]  # (ts_local, mid_ticks) since the oldest pending
            self.parity_fail_ts: list[int] = []
            self.metrics.rollout_mode.set(int(self.mode))
            self.log({"event": "canary_start", "mode": rc.mode, "canary_fraction": rc.canary_fraction,
                      "rng_seed": rc.rng_seed})

    @classmethod
    def maybe(cls, runner) -> LiveRollout | None:
        """A rollout when the config asks for an A/B or a canary, else None."""
        lc = runner.lc
        if lc.ab_b_config or lc.ab_b_set or runner.cfg.rollout.mode != "disabled":
            return cls(runner)
        return None

    def log(self, rec: dict) -> None:
        rec = {"ts_ns": int(self.runner.clock_ns()), **rec}
        self.events.append(rec)
        self.log_f.write(json.dumps(rec, default=str) + "\n")
        self.log_f.flush()

    def parity_failure(self, ts_ns: int | None = None, detail: str = "") -> None:
        """Count a parity failure (live decisions differing from their replay) for the ``parity_failure`` rail."""
        if self.canary:
            ts = int(self.runner.clock_ns() if ts_ns is None else ts_ns)
            self.parity_fail_ts.append(ts)
            self.log({"event": "parity_failure", "at_ns": ts, "detail": detail})

    # ------------------------------------------------------------------------------------------ routes

    def route_name(self, symbol_id: int, order_seq: int) -> str:
        from mmlab.hpo.canary import Route

        return Route(self.route_by_seq.get((symbol_id, order_seq), 0)).name.lower()

    def _routes(self, sids, ts, side, px) -> np.ndarray:
        from mmlab.hpo.canary import Route, route_signals, signal_hash_u

        u = signal_hash_u(self.rc.rng_seed, np.array([self.symbols[s] for s in sids], dtype=object), ts, side, px)
        fs = self.runner.failsafe
        if fs is not None and fs.fs.active:
            return u, np.full(len(u), int(Route.PAPER), dtype=np.int8)
        return u, route_signals(u, int(self.mode), self.rc.canary_fraction)

    def real_out(self, out: dict) -> dict:
        """``out`` with the PLACE actions of paper-routed signals removed (what goes to the venue)."""
        if not self.canary or not out.get("decisions"):
            return out
        dec = np.concatenate(out["decisions"])
        if not int(dec["n_actions"].sum()):
            return out
        acts = np.concatenate(out["dec_actions"])
        keep = np.ones(len(acts), dtype=bool)
        n_new = dec["n_actions"].copy()
        j = 0
        for k, r in enumerate(dec):
            n = int(r["n_actions"])
            sid = int(r["symbol_id"])
            for q in range(j, j + n):
                a = acts[q]
                if int(a["kind"]) == _PLACE:
                    route = self.route_by_id.get((sid, int(a["order_id"])))
                    if route is None:
                        _, rt = self._routes([sid], np.array([r["ts_local"]]), np.array([a["side"]]),
                                             np.array([a["price_ticks"]]))
                        route = int(rt[0])
                    if route == 0:
                        keep[q] = False
                        n_new[k] -= 1
            j += n
        dec = dec.copy()
        dec["n_actions"] = n_new
        return {**out, "decisions": [dec], "dec_actions": [acts[keep]]}

    # ------------------------------------------------------------------------------------------ steps

    def on_step(self, out: dict, step_ns: int) -> None:
        """Record one step's decision ticks, orders and fills (called once per step with outputs; ``step_ns``:
        wall time of the last runner step, the ``tick_total`` of these decision ticks)."""
        missed = step_ns > self.runner.lc.step_ms * NS_PER_MS
        states = np.concatenate(out["states"]) if out["states"] else None
        oev = np.concatenate(out["oev"]) if out["oev"] else None
        fills = np.concatenate(out["fills"]) if out["fills"] else None
        if states is not None and len(states) and self.t0_ns is None:
            self.t0_ns = int(states["ts_local"].min())
        if self.canary:
            self._canary_rows(states, oev, fills)
        if self.ab is not None:
            self._ab_rows(states, oev, fills, step_ns, missed)

    def _canary_rows(self, states, oev, fills) -> None:
        if states is not None and len(states):
            sid = states["symbol_id"].astype(np.int64)
            bb, ba = states["best_bid_ticks"], states["best_ask_ticks"]
            ok = (bb > -(2**61)) & (ba < 2**61)
            q = states["bid_qty"] + states["ask_qty"]
            for k in np.nonzero(ok)[0]:
                s = int(sid[k])
                self._spread[s] = float(ba[k] - bb[k])
                self._imb[s] = float((states["bid_qty"][k] - states["ask_qty"][k]) / q[k]) if q[k] > 0 else 0.0
                self._mids[s].append((int(states["ts_local"][k]), float(states["mid_ticks"][k])))
        if oev is not None and len(oev):
            sent = oev[oev["kind"] == _SENT]
            if len(sent):
                sids = sent["symbol_id"].astype(np.int64)
                u, routes = self._routes(sids, sent["ts_local"], sent["side"], sent["price_ticks"])
                for k in range(len(sent)):
                    s, seq = int(sids[k]), int(sent["order_seq"][k])
                    if routes[k]:
                        self.metrics.trades_opened.labels(("paper", "canary", "full")[routes[k]]).inc()
                    self.route_by_seq[(s, seq)] = int(routes[k])
                    self.route_by_id[(s, int(sent["order_id"][k]))] = int(routes[k])
                    self._sig_index[(s, seq)] = len(self._sig_filled)
                    self._sig["ts"].append(int(sent["ts_local"][k]))
                    self._sig["u"].append(float(u[k]))
                    self._sig["spread_ticks"].append(self._spread[s])
                    self._sig["imbalance"].append(self._imb[s])
                    self._sig_filled.append(False)
        if fills is not None and len(fills):
            for f in fills:
                key = (int(f["symbol_id"]), int(f["order_seq"]))
                i = self._sig_index.get(key)
                if i is None:
                    continue
                self._sig_filled[i] = True
                route = self.route_by_seq.get(key, 0)
                if route:
                    self.metrics.fills.labels(("paper", "canary", "full")[route], self.symbols[key[0]]).inc()
                self._pending.append((key[0], int(f["ts_local"]) + self.horizon_ns, int(f["side"]),
                                      int(f["price_ticks"]), self._sig["ts"][i], self._sig["u"][i]))
        self._resolve()

    def _resolve(self) -> None:
        """Mark trades whose horizon has passed with the first mid at or after fill + horizon."""
        left = []
        for s, out_ts, side, px, sig_ts, u in self._pending:
            mids = self._mids[s]
            hit = next((m for t, m in mids if t >= out_ts), None)
            if hit is None:
                left.append((s, out_ts, side, px, sig_ts, u))
                continue
            mk = side * (hit - px) / px * 1e4
            for k, v in (("sig_ts", sig_ts), ("u", u), ("out_ts", out_ts), ("won", mk > 0), ("markout", mk)):
                self._trades[k].append(v)
        self._pending = left
        oldest = min((p[1] for p in left), default=None)
        for s in range(len(self._mids)):
            m = self._mids[s]
            if oldest is None:
                self._mids[s] = m[-1:]
            else:
                self._mids[s] = [x for x in m if x[0] >= oldest - 1] or m[-1:]

    def _ab_rows(self, states, oev, fills, step_ns: int, missed: bool) -> None:
        sym = self.symbols
        if states is not None and len(states):
            tick = self.ticks[states["symbol_id"]]
            for k in range(len(states)):
                s = int(states["symbol_id"][k])
                pnl = float(states["pnl"][k])
                self._state.append({"symbol": sym[s], "ts_local": int(states["ts_local"][k]),
                                    "pnl": pnl if np.isfinite(pnl) else None, "tick_total_ns": int(step_ns),
                                    "deadline_miss": bool(missed), "mid": float(states["mid_ticks"][k]) * tick[k]})
        if oev is not None and len(oev):
            for e in oev[oev["kind"] == _SENT]:
                self._labels.append({"symbol": sym[int(e["symbol_id"])], "ts_decision": int(e["ts_local"]),
                                     "order_seq": int(e["order_seq"])})
        if fills is not None and len(fills):
            for f in fills:
                s = int(f["symbol_id"])
                mid = float(f["mid_send_ticks"])
                px = float(f["price_ticks"])
                slip = int(f["side"]) * (px - mid) / mid * 1e4 if mid > 0 else float("nan")
                self._fills.append({"symbol": sym[s], "ts_exch": int(f["ts_exch"]), "price": px * self.ticks[s],
                                    "qty": float(f["qty"]), "slippage_bps": slip, "maker": bool(f["maker"]),
                                    "order_seq": int(f["order_seq"])})

    # ------------------------------------------------------------------------------------------ periodic

    def check(self, horizon_ns: int) -> None:
        """Periodic: close finished A/B intervals and run the canary guard rails (processed time ``horizon_ns``)."""
        if self.t0_ns is None:
            return
        if self.ab is not None:
            if self.next_ab_ns is None:
                self.next_ab_ns = self.t0_ns + int(self.ab.interval_s * NS_PER_S)
            while horizon_ns >= self.next_ab_ns:
                self._ab_interval(self.next_ab_ns - int(self.ab.interval_s * NS_PER_S), self.next_ab_ns)
                self.next_ab_ns += int(self.ab.interval_s * NS_PER_S)
        if self.canary:
            step = int(self.rc.check_interval_s * NS_PER_S)
            if self.next_check_ns is None:
                self.next_check_ns = self.t0_ns + step
            # Trades of a check are marked once the horizon after them is processed.
            if horizon_ns - self.horizon_ns >= self.next_check_ns:
                t = self.t0_ns + ((horizon_ns - self.horizon_ns - self.t0_ns) // step) * step
                self._supervise(t)
                self.next_check_ns = t + step

    def _frames(self) -> dict:
        import polars as pl

        fills = pl.DataFrame(self._fills, schema={"symbol": pl.Utf8, "ts_exch": pl.Int64, "price": pl.Float64,
                                                  "qty": pl.Float64, "slippage_bps": pl.Float64, "maker": pl.Boolean,
                                                  "order_seq": pl.Int64})
        state = pl.DataFrame(list(self._last_state.values()) + self._state,
                             schema={"symbol": pl.Utf8, "ts_local": pl.Int64, "pnl": pl.Float64,
                                     "tick_total_ns": pl.Int64, "deadline_miss": pl.Boolean, "mid": pl.Float64}
                             ).sort("ts_local")
        labels = pl.DataFrame(self._labels, schema={"symbol": pl.Utf8, "ts_decision": pl.Int64, "order_seq": pl.Int64})
        filled = fills.group_by("symbol", "order_seq").agg(pl.col("qty").sum().alias("filled_qty"))
        labels = labels.join(filled, on=["symbol", "order_seq"], how="left").with_columns(
            pl.col("filled_qty").fill_null(0.0))
        return {"fills": fills, "state": state, "labels": labels}

    def _ab_interval(self, t0: int, t1: int) -> None:
        from mmlab.analysis.ab import bucket_metrics, evaluate_gates

        frames = self._frames()
        sa = [s for s, b in self.routing.items() if b == "A"]
        sb = [s for s, b in self.routing.items() if b == "B"]
        row = {"t0_ns": t0, "t1_ns": t1, "a": bucket_metrics(frames, sa, t0, t1), "b": bucket_metrics(frames, sb, t0, t1)}
        self.series.append(row)
        self.log({"event": "ab_interval", **row})
        # Keep only rows of later intervals (and each symbol's last decision tick for the pnl at the boundary).
        for r in self._state:
            if r["ts_local"] < t1:
                self._last_state[r["symbol"]] = r
        self._state = [r for r in self._state if r["ts_local"] >= t1]
        self._fills = [r for r in self._fills if r["ts_exch"] >= t1]
        self._labels = [r for r in self._labels if r["ts_decision"] >= t1]
        if self.rolled_back is not None or not sb:
            return
        res = evaluate_gates(self.series, self.ab.gates, auto_rollback=self.ab.auto_rollback)
        self.gates = res["gates"]
        rb = res["rollback"]
        if rb is not None:
            self._ab_rollback(rb)

    def _ab_rollback(self, rb: dict) -> None:
        a = self.runner.paper.a
        for i, s in enumerate(self.symbols):
            a.strat_params[i] = self.params_a[i]
            self.metrics.ab_bucket.labels(s).set(0)
        self.rolled_back = rb
        self.routing_final = {s: "A" for s in self.symbols}
        self.metrics.rollback.labels(rb["gate"]).inc()
        self.metrics.mode_switch.labels("ab", "a").inc()
        self.counts["rollback_total"] += 1
        self.counts["mode_switch_total"] += 1
        self.log({"event": "MODE_SWITCH", "from": "ab", "to": "a", "reason": rb["gate"], "detail": rb["reason"],
                  "at_ns": rb["ts_ns"]})

    def _streams(self):
        from mmlab.hpo.canary import RunStream

        sig = self._sig
        tr = self._trades
        return RunStream(sig_ts_ns=np.array(sig["ts"], dtype=np.int64), sig_u=np.array(sig["u"], dtype=np.float64),
                         sig_filled=np.array(self._sig_filled, dtype=bool),
                         features={f: np.array(sig[f], dtype=np.float64) for f in self.rc.drift_features},
                         trade_sig_ts_ns=np.array(tr["sig_ts"], dtype=np.int64),
                         trade_u=np.array(tr["u"], dtype=np.float64),
                         trade_out_ts_ns=np.array(tr["out_ts"], dtype=np.int64),
                         trade_won=np.array(tr["won"], dtype=bool),
                         trade_markout_bps=np.array(tr["markout"], dtype=np.float64))

    def _supervise(self, t_ns: int) -> None:
        from mmlab.hpo.canary import REASONS, Mode, supervise

        st = self._streams()
        res = supervise(st, st, self.rc, self.t0_ns, t_ns, parity_fail_ts_ns=self.parity_fail_ts)
        self.supervision = res["metrics"]
        m = self.metrics
        mt = res["metrics"]
        if mt.get("winrate_canary") is not None:
            m.winrate_canary.set(mt["winrate_canary"])
        if mt.get("winrate_baseline_active") is not None:
            m.winrate_baseline_active.set(mt["winrate_baseline_active"])
        m.sample_canary.set(mt.get("sample_canary") or 0)
        last = self.events_applied_ts if hasattr(self, "events_applied_ts") else -1
        for e in res["events"]:
            if e["ts_ns"] <= last:
                continue
            self.mode = Mode[e["to"].upper()]
            m.mode_switch.labels(e["from"], e["to"]).inc()
            self.counts["mode_switch_total"] += 1
            if e["reason"] in REASONS:
                m.rollback.labels(e["reason"]).inc()
                self.counts["rollback_total"] += 1
            m.rollout_mode.set(int(self.mode))
            self.log({"event": "MODE_SWITCH", "from": e["from"], "to": e["to"], "reason": e["reason"],
                      "detail": e["detail"], "at_ns": e["ts_ns"]})
            self.events_applied_ts = e["ts_ns"]

    # ------------------------------------------------------------------------------------------ end

    def summary(self) -> dict:
        out = dict(self.counts)
        if self.ab is not None:
            out["ab"] = {"routing": self.routing, "config_b_id": self.cfg_b.config_id, "intervals": len(self.series),
                         "gates": getattr(self, "gates", []), "rollback": self.rolled_back,
                         "routing_final": getattr(self, "routing_final", self.routing)}
        if self.canary:
            by_route: dict[str, int] = {}
            for r in self.route_by_seq.values():
                name = ("paper", "canary", "full")[r]
                by_route[name] = by_route.get(name, 0) + 1
            out["canary"] = {"mode_start": self.rc.mode, "mode_final": self.mode.name.lower(),
                             "signals_by_route": by_route, "trades_marked": len(self._trades["won"]),
                             "supervision": getattr(self, "supervision", None)}
        return out

    def close(self) -> None:
        self.log_f.close()

