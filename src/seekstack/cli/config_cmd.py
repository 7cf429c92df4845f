"""`seekstack config check FILE` and `seekstack config docs`."""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import check_config, load_settings, settings_reference
from ..errors import ConfigError
from .common import console

app = typer.Typer(help="Check a seekstack.yaml, or print the settings reference.", no_args_is_help=True)
out = console()


@app.command("check")
def check(file: Path = typer.Argument(..., help="The seekstack.yaml to check.")) -> None:
    """Report every problem in FILE at once, naming the field and the fix."""
    problems = check_config(file)
    if problems:
        raise ConfigError(f"{file} has {len(problems)} problem(s):\n  " + "\n  ".join(problems), fix="fix the fields named above")
    settings = load_settings(file)
    out.print(f"[green]ok:[/] {file} — {len(settings.models)} model(s): {', '.join(m.name for m in settings.models)}")


@app.command("docs")
def docs() -> None:
    """Print the settings reference (docs/configuration.md is generated from it)."""
    print(settings_reference(), end="")
