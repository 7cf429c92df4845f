"""`seekstack config check FILE`, `seekstack config reload` and `seekstack config docs`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import check_config, find_config_file, load_settings, settings_reference
from ..errors import ConfigError
from .common import ApiKeyOption, ConfigOption, UrlOption, connect, console

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


@app.command("reload")
def reload(url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, key: Optional[str] = ApiKeyOption) -> None:
    """Apply the running server's config file again: models added, changed or removed without dropping a request.

    A file with any problem is refused whole, every problem listed; the running config stays."""
    file = find_config_file(config)
    problems = check_config(file) if file is not None else []
    if problems:  # the server would refuse it the same way; say so without asking it
        raise ConfigError(f"{file}: the new config was refused whole ({len(problems)} problem(s)); the running one "
                          "stays:\n  " + "\n  ".join(problems), fix="fix them, then reload again")
    result = connect(url, key, config).request("POST", "/admin/v1/config/reload", timeout=None)  # new models load
    for label in ("added", "changed", "removed", "rerouted", "failed"):
        if result.get(label):
            out.print(f"{label}: {', '.join(result[label])}")
    if not any(result.get(label) for label in ("added", "changed", "removed", "rerouted", "failed")):
        out.print("no model changed")
    if result.get("restart_needed"):
        out.print(f"[yellow]changed, applied only at a restart: {', '.join(result['restart_needed'])}[/]")
    if result.get("failed"):
        raise typer.Exit(1)
    out.print("[green]reloaded[/]")


@app.command("docs")
def docs() -> None:
    """Print the settings reference (docs/configuration.md is generated from it)."""
    print(settings_reference(), end="")
