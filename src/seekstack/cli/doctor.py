"""`seekstack doctor`: is this machine and configuration ready to serve?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..config import load_settings
from ..doctor import FAIL, WARN, run_checks
from .common import ConfigOption, JsonOption, console

out = console()
STYLE = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}


def doctor(config: Optional[Path] = ConfigOption, as_json: bool = JsonOption) -> None:
    """Check configuration, port, TLS certificate expiry, secret file modes, the audit chain, memory, disk and GPUs."""
    rows = run_checks(load_settings(config))
    if as_json:
        print(json.dumps([r.__dict__ for r in rows], indent=2))
    else:
        table = Table(title="seekstack doctor")
        for col in ("check", "status", "detail", "fix"):
            table.add_column(col)
        for r in rows:
            table.add_row(r.name, f"[{STYLE[r.status]}]{r.status}[/]", escape(r.detail), escape(r.fix))  # details may hold [brackets]
        out.print(table)
    if any(r.status == FAIL for r in rows):
        raise typer.Exit(2)
    if any(r.status == WARN for r in rows):
        raise typer.Exit(1)
