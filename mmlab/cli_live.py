"""``mmlab`` commands of the live area, registered on the main app by :func:`register` (heavy imports inside commands)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(text: str) -> float:
    """``"60s"``, ``"500ms"``, ``"5m"``, ``"2h"`` or a bare number of seconds -> seconds.

    >>> parse_duration_s("90s"), parse_duration_s("1.5m"), parse_duration_s("250ms")
    (90.0, 90.0, 0.25)
    """
    from mmlab.errors import ConfigError

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*", text or "")
    if not m:
        raise ConfigError(f"--duration {text!r} is not a duration; use e.g. 60s, 500ms, 5m or 2h")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""

    @app.command("live")
    def live(
        paper: bool = typer.Option(False, "--paper", help="Paper trading: the simulator's matching, queue and latency kernels on the live book (required: real mode is not available)."),
        config: Path | None = typer.Option(None, "--config", help="Config (TOML): its strategy, sim (paper exchange) and live sections."),
        venue: str | None = typer.Option(None, "--venue", help="live.venue: bybit-linear, bybit-spot or binance-usdm."),
        symbols: str | None = typer.Option(None, "--symbols", help="Comma list of symbols (live.symbols), e.g. BTCUSDT,ETHUSDT."),
        ws_url: str | None = typer.Option(None, "--ws-url", help="Websocket endpoint (live.ws_url), e.g. ws://127.0.0.1:PORT/v5/public/linear."),
        rest_url: str | None = typer.Option(None, "--rest-url", help="REST base for instruments-info / depth snapshots (live.rest_url)."),
        duration: str | None = typer.Option(None, "--duration", help="Stop after this long (60s, 5m, 2h); default: until Ctrl-C."),
        out: Path | None = typer.Option(None, "--out", help="Output directory (recording/, *.jsonl, decisions.parquet, summary.json)."),
        metrics_port: int | None = typer.Option(None, "--metrics-port", help="Serve Prometheus /metrics on this port (live.metrics_port)."),
        overrides: list[str] = typer.Option([], "--set", help="Override a config value: section.key=value (repeatable)."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
        real: bool = typer.Option(False, "--real", help="Real trading on Bybit v5 linear ([live] real_env, default testnet; keys from BYBIT_API_KEY/BYBIT_API_SECRET); needs the confirmation flag and [live] real_max_* limits."),
        confirm_real: bool = typer.Option(False, "--i-understand-this-trades-real-money", help="Confirm --real."),
        failsafe: bool = typer.Option(False, "--failsafe", help="Fail-safe mode (live.failsafe): critical events route everything to paper for live.failsafe_cooldown_s."),
        ab_b_config: Path | None = typer.Option(None, "--ab-b-config", help="A/B: config B (TOML) whose strategy/pipeline params run on the symbols routed to B (live.ab_b_config)."),
    ):
        """Run the strategy on a live public feed with paper fills; record the feed for a backtest replay."""
        from mmlab.config import load_config
        from mmlab.errors import ConfigError, MmlabError

        try:
            if paper == real:
                raise ConfigError("mmlab live needs --paper, or --real with --i-understand-this-trades-real-money "
                                  "(one of the two modes)")
            if real and not confirm_real:
                raise ConfigError("real mode refused: --real trades real money on the venue; add "
                                  "--i-understand-this-trades-real-money to confirm")
            items = []
            if venue:
                items.append(f"live.venue={json.dumps(venue)}")
            if symbols:
                names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
                items.append(f"live.symbols={json.dumps(names)}")
            if ws_url:
                items.append(f"live.ws_url={json.dumps(ws_url)}")
            if rest_url:
                items.append(f"live.rest_url={json.dumps(rest_url)}")
            if duration:
                items.append(f"live.duration_s={parse_duration_s(duration)}")
            if metrics_port is not None:
                items.append(f"live.metrics_port={int(metrics_port)}")
            if failsafe:
                items.append("live.failsafe=true")
            if ab_b_config is not None:
                items.append(f"live.ab_b_config={json.dumps(str(ab_b_config))}")
            cfg = load_config(config, overrides=items + list(overrides))
            from live.runner import run_live

            summary = run_live(cfg, out_dir=out, real=real, confirm_real=confirm_real)
        except MmlabError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        if as_json:
            typer.echo(json.dumps(summary, indent=2, sort_keys=True))
            return
        keys = ("frames", "events", "n_decisions", "n_orders", "n_fills", "reconnects", "gaps", "backpressure_total",
                "warmup_skip_total", "frame_to_step_us_p50", "frame_to_step_us_p99")
        for k in keys:
            typer.echo(f"{k:>24}  {summary.get(k)}")
        if "failsafe" in summary:
            typer.echo(f"{'fail_safe_switches':>24}  {summary['failsafe']['switches']}")
        if "rollout" in summary:
            ro = summary["rollout"]
            typer.echo(f"{'rollbacks':>24}  {ro['rollback_total']} (mode switches {ro['mode_switch_total']})")
        typer.echo(f"{'out':>24}  {out or cfg.live.out_dir or 'experiments/live/<utc timestamp>'}")
