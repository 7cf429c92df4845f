"""`seekstack rollout start|switch|status|promote|abort`: canary and blue-green rollouts of a
model to another store version, through the admin API (``rollout:*``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import InvalidRequestError
from .common import ApiKeyOption, ConfigOption, JsonOption, UrlOption, connect, console

out = console()
app = typer.Typer(help="Canary and blue-green rollouts to another version from the model store.", no_args_is_help=True)

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``2h``, ``1d`` as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise InvalidRequestError(f"--for {text!r} is not a duration", fix="write it as 90s, 30m, 2h or 1d")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def percent(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text)
    if not match or not 0 < float(match.group(1)) < 100:
        raise InvalidRequestError(f"--canary {text!r} is not a share between 0 and 100 %", fix="write it as 1% or 5")
    return float(match.group(1))


def _show(rollout: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rollout, indent=2))
        return
    share = f" at {rollout['percent']:g}% for {rollout['duration_s']:g} s" if rollout["mode"] == "canary" else ""
    out.print(f"{rollout['mode']} of {rollout['model']} to {rollout['to']}{share}: [bold]{rollout['state']}[/]"
              + (f" — {rollout['reason']}" if rollout["reason"] else ""))


@app.command("start")
def start(model: str = typer.Argument(..., help="The model (its name in seekstack.yaml)."),
          to: str = typer.Option(..., "--to", help="The store version: VERSION or NAME@VERSION."),
          canary: str = typer.Option("1%", "--canary", help="The share of the model's traffic the new version takes."),
          duration: str = typer.Option("30m", "--for", help="Promoted after this long without breaking a guard."),
          max_error_rate: float = typer.Option(0.01, "--max-error-rate", help="Error rate allowed above the baseline's."),
          max_ttft_ratio: float = typer.Option(1.5, "--max-ttft-ratio", help="p99 time to first token allowed, × the baseline's."),
          url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
          as_json: bool = JsonOption) -> None:
    """Start a canary: the new version takes a share of the traffic, judged against the baseline
    every second; rolled back at once when it breaks a guard, promoted when the time is up."""
    _show(connect(url, key, config).request("POST", "/admin/v1/rollouts", {
        "model": model, "to": to, "mode": "canary", "canary_percent": percent(canary), "duration_s": seconds(duration),
        "max_error_rate": max_error_rate, "max_ttft_ratio": max_ttft_ratio}, timeout=60), as_json)


@app.command("switch")
def switch(model: str = typer.Argument(..., help="The model (its name in seekstack.yaml)."),
           to: str = typer.Option(..., "--to", help="The store version: VERSION or NAME@VERSION."),
           url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
           as_json: bool = JsonOption) -> None:
    """Blue-green: start the new version beside the old, warm it, switch every new request to it
    at once, and let the old one drain. `rollout status` shows when it has switched."""
    _show(connect(url, key, config).request("POST", "/admin/v1/rollouts", {"model": model, "to": to, "mode": "blue-green"},
                                            timeout=60), as_json)


@app.command("status")
def status(url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
           as_json: bool = JsonOption) -> None:
    """Rollouts in progress, then the last ones that ended, with the canary's and baseline's numbers."""
    rows = connect(url, key, config).get("/admin/v1/rollouts")["data"]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="rollouts")
    for column in ("model", "mode", "to", "share", "state", "elapsed", "canary (req/err/p99)", "baseline (req/err/p99)", "reason"):
        table.add_column(column)
    for r in rows:
        nums = [f"{d.get('requests', 0)}/{d.get('errors', 0)}/" +
                (f"{d['p99_ttft_s'] * 1000:.0f} ms" if d.get("p99_ttft_s") is not None else "-") for d in (r["canary"], r["baseline"])]
        table.add_row(r["model"], r["mode"], r["to"], f"{r['percent']:g}%", r["state"], f"{r['elapsed_s']:g} s",
                      *nums, r["reason"] or "-")
    out.print(table)


@app.command("promote")
def promote(model: str = typer.Argument(..., help="The model whose canary to promote now."),
            url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
            as_json: bool = JsonOption) -> None:
    """Promote a canary now: it takes all the traffic, and the old version drains."""
    _show(connect(url, key, config).request("POST", f"/admin/v1/rollouts/{model}/promote"), as_json)


@app.command("abort")
def abort(model: str = typer.Argument(..., help="The model whose rollout to abort."),
          url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption,
          as_json: bool = JsonOption) -> None:
    """Abort a rollout: the new version leaves at once and drains; the old one takes all the traffic."""
    _show(connect(url, key, config).request("POST", f"/admin/v1/rollouts/{model}/abort"), as_json)
