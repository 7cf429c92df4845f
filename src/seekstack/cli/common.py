"""Options and helpers shared by commands."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Optional

import httpx
import typer
from rich.console import Console

from ..config import Settings, load_settings
from ..errors import (AuthenticationError, ConfigError, InvalidRequestError, PermissionDeniedError,
                      ServerUnreachableError)

ConfigOption = typer.Option(None, "--config", "-c", help="seekstack.yaml to use (default: ./seekstack.yaml if present, else the embedded model).",
                            exists=False, dir_okay=False)
UrlOption = typer.Option(None, "--url", help="Gateway URL (default: $SEEKSTACK_URL, else from the config's server host/port).")
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


ApiKeyOption = typer.Option(None, "--api-key", help="API key (default: $SEEKSTACK_API_KEY, else the key file that `serve` wrote for the command's duty: admin.key, or security-admin.key for keys, users, teams and limits).")


def gateway_url(url: Optional[str], config: Optional[Path]) -> str:
    if url:
        return url.rstrip("/")
    if os.environ.get("SEEKSTACK_URL"):
        return os.environ["SEEKSTACK_URL"].rstrip("/")
    settings: Settings = load_settings(config)
    host, port = settings.server.host, settings.server.port
    running = running_server(settings)  # the server `serve` started with this state, on whatever --port
    if running is not None:
        host, port = running.get("host", host), running.get("port", port)
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if settings.server.tls else "http"
    return f"{scheme}://{host}:{port}"


def running_server(settings: Settings) -> Optional[dict]:
    """What the running `serve` of this state directory recorded (pid, host, port), if one runs."""
    from .. import statelock
    from ..governance.service import audit_dir

    holder = statelock.holder_of(audit_dir(settings) / "serve.lock")
    pid = holder.get("pid")
    if not isinstance(pid, int) or not isinstance(holder.get("port"), int) or not holder["port"]:
        return None
    return holder if pid_running(pid) else None


def pid_running(pid: int) -> bool:
    """Whether process ``pid`` runs (under any user; a zombie that has exited does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[-1][:1] != "Z"
    except FileNotFoundError:
        return False


def api_key(explicit: Optional[str], config: Optional[Path], duty: str = "system") -> Optional[str]:
    """--api-key, else $SEEKSTACK_API_KEY, else the bootstrap key file of ``duty`` when this user can read it."""
    if explicit:
        return explicit.strip()
    if os.environ.get("SEEKSTACK_API_KEY"):
        return os.environ["SEEKSTACK_API_KEY"].strip()
    from ..governance.service import duty_key_path

    try:
        return duty_key_path(load_settings(config), duty).read_text().strip() or None
    except OSError:
        return None


@dataclass
class GatewayClient:
    """The CLI's view of a running gateway: URL, key, and errors turned into the exception tree."""

    url: str
    key: Optional[str]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def request(self, method: str, path: str, body: Optional[dict] = None, timeout: Optional[float] = 10.0) -> dict:
        try:
            response = httpx.request(method, self.url + path, json=body, headers=self.headers, timeout=timeout)
        except httpx.TransportError:
            raise ServerUnreachableError(f"cannot reach seekstack at {self.url}",
                                         fix="start it with `seekstack serve`, or pass --url") from None
        check(response)
        return response.json()

    def get(self, path: str) -> dict:
        return self.request("GET", path)


def check(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    message = error_message(response)
    if response.status_code == 401:
        raise AuthenticationError(message, fix="pass --api-key or set SEEKSTACK_API_KEY")
    if response.status_code == 403:
        raise PermissionDeniedError(message, fix="use a key whose role allows this")
    raise InvalidRequestError(f"HTTP {response.status_code}: {message}")


def connect(url: Optional[str], key: Optional[str], config: Optional[Path], duty: str = "system") -> GatewayClient:
    return GatewayClient(gateway_url(url, config), api_key(key, config, duty))


def error_message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except Exception:
        return response.text[:200]


def console(stderr: bool = False) -> Console:
    """A console that never ellipsizes table cells when output is piped (Rich defaults to 80 columns)."""
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, highlight=False, width=None if probe.is_terminal else 200)


@contextmanager
def output_file(path: Path, mode: int = 0o644, newline: str | None = None) -> Iterator[IO[str]]:
    """A text file that appears at ``path`` whole or not at all: written beside it under a
    temporary name, renamed into place when the block ends; removed if the block fails.
    ``-`` is standard output."""
    if str(path) == "-":
        yield sys.stdout
        return
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}", fix="pick a writable --output path") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            yield f
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ConfigError(f"cannot write {path}: {exc.strerror}", fix="pick a writable --output path") from None
        raise


def write(path: Path, text: str) -> None:
    """Write all of ``text`` to ``path`` or nothing (``-``: standard output)."""
    with output_file(path) as f:
        f.write(text)
