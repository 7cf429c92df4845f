"""`seekstack deploy alerts|dashboard`: files for Prometheus and Grafana, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import load_settings
from ..observability.alerts import alerts, render_rules
from ..observability.dashboard import render_dashboard
from .common import console, write

app = typer.Typer(help="Write monitoring files: Prometheus alert rules and a Grafana dashboard.", no_args_is_help=True)
out = console()
CONFIG = typer.Option(None, "--config", "-c", help="seekstack.yaml whose observability.alerts thresholds to use.")


@app.command("alerts")
def deploy_alerts(
    output: Path = typer.Option(Path("-"), "--output", "-o", help="Rule file to write (default: standard output)."),
    config: Optional[Path] = CONFIG,
) -> None:
    """Write the Prometheus alert rules (thresholds from observability.alerts); load them with `rule_files:`."""
    settings = load_settings(config)
    write(output, render_rules(settings.observability.alerts))
    if str(output) != "-":
        out.print(f"[green]wrote[/] {output}: {len(alerts(settings.observability.alerts))} alert rules "
                  "(check with `promtool check rules`)")


@app.command("dashboard")
def deploy_dashboard(
    output: Path = typer.Option(Path("-"), "--output", "-o", help="Dashboard JSON to write (default: standard output)."),
) -> None:
    """Write the Grafana dashboard (import it in Grafana, pick the Prometheus data source)."""
    write(output, render_dashboard())
    if str(output) != "-":
        out.print(f"[green]wrote[/] {output}: import it under Dashboards → New → Import")
