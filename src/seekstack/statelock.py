"""One audit chain, one `serve`: an exclusive lock held for the process's life.

Two servers writing one audit chain would break it (both append record N, and every request
after gets 503). ``serve`` takes ``serve.lock`` in its audit directory (by default
``<state_dir>/audit``: so one state directory serves one ``serve``; gateways that share a
state_dir on purpose each set their own ``audit.dir``) with ``flock``. The kernel drops the
lock when the process ends, however it ends, so a crash never leaves a stale lock. The file
names the holder — PID, address — for the refusal a second ``serve`` prints.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from .errors import ConfigError

_held: list[int] = []  # descriptors kept open (and so locked) until the process exits


def hold(directory: Path, name: str = "serve.lock", **facts) -> Path:
    """Lock ``directory`` for this process, or raise ConfigError naming the process that holds it."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = holder_of(path)
        who = f"PID {holder.get('pid', '?')}, port {holder.get('port', '?')}" if holder else "another process"
        raise ConfigError(f"another seekstack serve ({who}) is already serving from {directory}",
                          fix="stop it first, or give this server its own `state_dir` in its config (or, to share "
                              "the state on purpose, its own `audit.dir`)") from None
    _held.append(fd)
    record(path, pid=os.getpid(), **facts)
    return path


def record(path: Path, **facts) -> None:
    """Rewrite the holder's facts (e.g. the port once the listener is bound); the lock stays."""
    data = json.dumps(facts).encode()
    fd = next((fd for fd in _held if os.path.samestat(os.fstat(fd), os.stat(path))), None)
    if fd is None:
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def holder_of(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
