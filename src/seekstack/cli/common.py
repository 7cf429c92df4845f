"""Options and helpers shared by commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import httpx
import typer
from rich.console import Console

from ..config import Settings, load_settings
from ..errors import InvalidRequestError, ServerUnreachableError

ConfigOption = typer.Option(None, "--config", "-c", help="seekstack.yaml to use (default: ./seekstack.yaml if present, else the embedded model).",
                            exists=False, dir_okay=False)
UrlOption = typer.Option(None, "--url", help="Gateway URL (default: $SEEKSTACK_URL, else from the config's server host/port).")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def gateway_url(url: Optional[str], config: Optional[Path]) -> str:
    if url:
        return url.rstrip("/")
    if os.environ.get("SEEKSTACK_URL"):
        return os.environ["SEEKSTACK_URL"].rstrip("/")
    settings: Settings = load_settings(config)
    host = settings.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    scheme = "https" if settings.server.tls else "http"
    return f"{scheme}://{host}:{settings.server.port}"


def get_json(url: str, path: str) -> dict:
    try:
        response = httpx.get(url + path, timeout=10.0)
    except httpx.TransportError:
        raise ServerUnreachableError(f"cannot reach seekstack at {url}",
                                     fix="start it with `seekstack serve`, or pass --url") from None
    if response.status_code != 200:
        raise InvalidRequestError(f"{url}{path} answered HTTP {response.status_code}: {error_message(response)}")
    return response.json()


def error_message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except Exception:
        return response.text[:200]


def console(stderr: bool = False) -> Console:
    """A console that never ellipsizes table cells when output is piped (Rich defaults to 80 columns)."""
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, highlight=False, width=None if probe.is_terminal else 200)
