"""The secrets for an engine seekstack does not start: its API key (from an environment variable
or a 0600 file) and the TLS the gateway speaks to it (a private CA, a client certificate whose
key is in a 0600 file).

Never logged, never shown: the key travels only in the Authorization header to that engine.
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

from ..errors import ConfigError
from .http import tls_context
from .settings import EngineSettings


def read_api_key(settings: EngineSettings) -> str | None:
    """The key named by ``api_key_env`` or ``api_key_file`` (the file must be 0600 or stricter); None: no key."""
    if settings.api_key_env:
        key = os.environ.get(settings.api_key_env)
        if not key:
            raise ConfigError(f"engine.api_key_env: the environment variable {settings.api_key_env} is not set",
                              fix=f"export {settings.api_key_env}=… before starting seekstack")
        return key.strip()
    if settings.api_key_file:
        path = Path(settings.api_key_file).expanduser()
        _private(path, "api_key_file", "point it at a file holding the server's API key")
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"engine.api_key_file: cannot read {path} ({exc.strerror})",
                              fix="point it at a file holding the server's API key") from None
        if not key:
            raise ConfigError(f"engine.api_key_file: {path} is empty", fix="write the server's API key into it")
        return key
    return None


def engine_tls(settings: EngineSettings) -> ssl.SSLContext | None:
    """The TLS context for this model's ``https://`` engines: ``ca_file`` to verify them, and
    ``cert_file`` / ``key_file`` to present (the key 0600 or stricter). None: the system's CAs,
    no client certificate."""
    if settings.ca_file is None and settings.cert_file is None:
        return None
    if settings.cert_file is None and settings.key_file is not None:
        raise ConfigError("engine.key_file: set without cert_file", fix="set cert_file to its certificate, or remove key_file")
    files = [None if f is None else str(Path(f).expanduser()) for f in (settings.ca_file, settings.cert_file, settings.key_file)]
    key = files[2] or files[1]
    if key is not None:
        field = "key_file" if files[2] else "cert_file"
        _private(Path(key), field, f"point {field} at a PEM file holding the client certificate's private key")
    return tls_context(*files)


def _private(path: Path, field: str, fix: str) -> None:
    """``path`` (a secret) can be read, and by its owner only."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"engine.{field}: cannot read {path} ({exc.strerror})", fix=fix) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"engine.{field}: {path} can be read by other users (mode {stat.S_IMODE(mode):o})",
                          fix=f"chmod 600 {path}")
