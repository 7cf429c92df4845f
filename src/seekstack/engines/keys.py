"""The API key of an engine seekstack does not start: from an environment variable or a 0600 file.

Never logged, never shown: it travels only in the Authorization header to that engine.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import ConfigError
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
        try:
            mode = path.stat().st_mode
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"engine.api_key_file: cannot read {path} ({exc.strerror})",
                              fix="point it at a file holding the server's API key") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"engine.api_key_file: {path} can be read by other users (mode {stat.S_IMODE(mode):o})",
                              fix=f"chmod 600 {path}")
        if not key:
            raise ConfigError(f"engine.api_key_file: {path} is empty", fix="write the server's API key into it")
        return key
    return None
