"""`seekstack models`, `seekstack ps`, `seekstack version`."""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version as pkg_version
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import typer
from rich.markup import escape
from rich.table import Table

from .. import __version__
from ..config import load_settings
from ..errors import ConfigError
from .common import ApiKeyOption, ConfigOption, JsonOption, UrlOption, connect, console

out = console()


models_app = typer.Typer(help="Configured and stored models: list, history, rollback, catalog.", invoke_without_command=True)


@models_app.callback()
def models(ctx: typer.Context, config: Optional[Path] = ConfigOption, as_json: bool = JsonOption) -> None:
    """List configured models and whether their files are installed (subcommands: history, rollback, catalog)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings(config)
    try:
        from ..store import resolve_models

        resolve_models(settings)
    except ConfigError:
        pass  # unresolved store models show as missing
    rows = []
    for m in settings.models:
        try:
            if not m.engine.launched:  # a server someone else runs: nothing installed here
                path, installed, size = None, True, None
            else:
                path = m.resolved_path()
                installed = path.exists() or m.engine.simulated
                size = path.stat().st_size if path.is_file() else None
        except ConfigError:
            path, installed, size = None, False, None
        engine = m.engine.kind + (" (simulated)" if m.engine.simulated else f" at {m.engine.url}" if not m.engine.launched else "")
        rows.append({"name": m.name, "engine": engine, "path": str(path) if path else None, "installed": installed,
                     "size_bytes": size, "replicas": m.replicas, "context": m.context, "slots": m.slots,
                     "embeddings": m.embeddings, "task": m.task, "reasoning": m.reasoning_format()})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="models")
    for col in ("name", "engine", "installed", "size", "replicas", "context×slots", "task", "reasoning", "path"):
        table.add_column(col)
    for r in rows:
        size = f"{r['size_bytes'] / 2**20:.0f} MiB" if r["size_bytes"] else "-"
        table.add_row(r["name"], r["engine"], "yes" if r["installed"] else "[red]missing[/]", size, str(r["replicas"]),
                      f"{r['context']}×{r['slots']}", r["task"], r["reasoning"], r["path"] or "-")
    out.print(table)
    _print_store(settings)


def _print_store(settings) -> None:
    """The models in the store (installed), when there are any."""
    from ..store import open_store

    store = open_store(settings)
    names = store.names()
    if not names:
        return
    table = Table(title=f"store ({store.root})")
    for col in ("name", "current", "versions", "size", "format", "signed by", "source"):
        table.add_column(col)
    for name in names:
        m = store.manifest(name)
        table.add_row(name, str(m.version), str(len(store.versions(name))), f"{m.size / 2**20:.0f} MiB", m.format,
                      ", ".join(s["key_id"] for s in m.signatures) or "-", m.source)
    out.print(table)


def ps(url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption, as_json: bool = JsonOption,
       key: Optional[str] = ApiKeyOption) -> None:
    """Show running engine replicas: address, PID, state, memory and uptime."""
    gateway = connect(url, key, config)
    base = gateway.url
    replicas = gateway.get("/admin/v1/replicas")["data"]
    if as_json:
        print(json.dumps(replicas, indent=2))
        return
    table = Table(title=f"replicas at {base}")
    for col in ("model", "replica", "engine", "state", "health", "load q/run/kv", "pid", "address", "memory", "uptime",
                "restarts", "in flight"):
        table.add_column(col)
    for r in replicas:
        mem = f"{r['memory_bytes'] / 2**20:.0f} MiB" if r.get("memory_bytes") else "-"
        state = r["state"] if r["state"] == "ready" else f"[yellow]{r['state']}[/]"
        if r.get("on_demand"):
            state += " (loads on request)"
        health = r["health"]["state"] + (f": {r['health']['reason']}" if r["health"]["reason"] else "")
        engine = r["engine"] + (" [yellow](simulated)[/]" if r.get("simulated") else "")
        table.add_row(r["model"], str(r["replica"]), engine, state, escape(health), _load(r["load"]), str(r["pid"] or "-"),
                      _address(r), mem, _duration(r["uptime_s"]), str(r["restarts"]), str(r["outstanding"]))
    out.print(table)


def _address(replica: dict) -> str:
    """Where the engine listens: its port here, a Unix socket, or (an engine elsewhere) host:port."""
    if replica["port"]:
        return str(replica["port"])
    url = replica.get("base_url") or ""
    return "unix socket" if url.startswith("unix://") else urlsplit(url).netloc or "-"


def _load(load: dict) -> str:
    parts = [("-" if load[k] is None else f"{load[k]:.0f}") for k in ("queued", "running")]
    parts.append("-" if load["kv_use"] is None else f"{load['kv_use']:.0%}")
    return "/".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def version() -> None:
    """Print versions of seekstack and its engine."""
    try:
        engine = pkg_version("xllamacpp")
    except PackageNotFoundError:
        engine = "not installed"
    out.print(f"seekstack {__version__} (xllamacpp {engine}, Python {platform.python_version()})")


@models_app.command("load")
def models_load(name: str = typer.Argument(..., help="A configured model's name."),
                url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption,
                key: Optional[str] = ApiKeyOption) -> None:
    """Start an unloaded model's replicas again, without restarting the server."""
    result = connect(url, key, config).request("POST", f"/admin/v1/models/{name}/load")
    out.print(f"[green]loaded[/] {name}" if result["state"] == "ready" else f"{name} is starting; see `seekstack ps`")


@models_app.command("unload")
def models_unload(name: str = typer.Argument(..., help="A configured model's name."),
                  url: Optional[str] = UrlOption, config: Optional[Path] = ConfigOption,
                  key: Optional[str] = ApiKeyOption) -> None:
    """Stop a model's replicas and free their memory, without restarting the server; `load` brings them back."""
    result = connect(url, key, config).request("POST", f"/admin/v1/models/{name}/unload")
    out.print(f"[green]unloaded[/] {name} ({result['replicas']} replica(s) stopped)")


@models_app.command("catalog")
def catalog(as_json: bool = JsonOption) -> None:
    """The DeepSeek family the planner knows: architecture, published quantizations and sizes."""
    from ..planner.catalog import catalog_model, model_names

    rows = [catalog_model(n) for n in model_names()]
    if as_json:
        from dataclasses import asdict

        print(json.dumps([asdict(r) for r in rows], indent=1))
        return
    table = Table(title="model catalog")
    for column in ("name", "params (B)", "active (B)", "layers", "attention", "max context", "native", "published sizes (GB)"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.name, f"{r.params_b:g}", f"{r.active_b:g}", str(r.layers), r.attention, f"{r.max_context:,}", r.native,
                      ", ".join(f"{q} {gb:g}" for q, gb in r.sizes_gb.items()) or "-")
    out.print(table)
