"""An engine's lifecycle: start it, wait for it to exit, stop it — nothing of the request path.

The request path (send, count tokens, errors, health, load) is the :class:`~.backend.Backend`'s.
A :class:`ProcessEngine` is a supervised child process serving HTTP on a private Unix socket or
a loopback port; an :class:`ExternalEngine` is a server someone else runs (nothing to start).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import ModelConfig


class Engine(abc.ABC):
    """One engine replica's lifecycle."""

    port: int | None = None

    @property
    @abc.abstractmethod
    def base_url(self) -> str: ...

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin starting; return once the process exists (health says when it is ready)."""

    @abc.abstractmethod
    async def stop(self, timeout: float = 10.0) -> None: ...

    pid: int | None = None  # a process engine's

    @abc.abstractmethod
    async def wait(self) -> int:
        """Wait for the engine to exit; return its exit code."""

    def alive(self) -> bool:
        """Whether the engine can be running at all (a process that exited cannot)."""
        return True


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ProcessEngine(Engine):
    """An engine that is a child process serving HTTP on a loopback port."""

    uses_unix_socket = True  # listens on a Unix socket when the supervisor offers one

    def __init__(self, model: "ModelConfig", *, log_path: Path, socket_path: Path | None = None,
                 port: int | None = None, nice: int = 0, api_key: str | None = None):
        """Listen on ``socket_path`` (a Unix socket) when given, else on ``port`` (default: a free
        one) of the engine's ``host``."""
        self.model = model
        self.host = model.engine.host
        self.socket_path = socket_path if self.uses_unix_socket else None
        self.port = None if self.socket_path else port or free_port(self.host)
        self.log_path = log_path
        self.nice = nice
        self.api_key = api_key
        self._proc: asyncio.subprocess.Process | None = None

    @abc.abstractmethod
    def command(self) -> list[str]: ...

    def environment(self) -> dict[str, str]:
        """Extra environment of the child (secrets go here, not on its command line)."""
        return {}

    @property
    def base_url(self) -> str:
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:  # type: ignore[override]
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)  # left by a crashed predecessor
        log = open(self.log_path, "ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the gateway only; it drains, then stops us
                env={**os.environ, "SEEKSTACK_PARENT_PID": str(os.getpid()), **self.environment()},
            )
            if self.nice:
                # Still one thread (the interpreter is starting); threads it makes later inherit this.
                with contextlib.suppress(ProcessLookupError):
                    os.setpriority(os.PRIO_PROCESS, self._proc.pid, self.nice)
                # With the kernel's autogroups on (most distributions), a process in its own session
                # competes as a group, and its threads' nice values count only inside that group:
                # the group gets the same value, or the setting would change nothing.
                with contextlib.suppress(OSError):
                    Path(f"/proc/{self._proc.pid}/autogroup").write_text(str(self.nice))
        finally:
            log.close()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def wait(self) -> int:
        assert self._proc is not None
        return await self._proc.wait()

    async def stop(self, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout)
        except (asyncio.TimeoutError, ProcessLookupError):
            try:
                proc.kill()
            except ProcessLookupError:
                pass
            await proc.wait()


class ExternalEngine(Engine):
    """A server seekstack does not start: nothing to start or stop, and it never "exits" (the
    heartbeat takes it out of rotation while it does not answer, and back when it does)."""

    def __init__(self, base_url: str):
        self._base_url = base_url

    @property
    def base_url(self) -> str:
        return self._base_url

    async def start(self) -> None:
        return None

    async def stop(self, timeout: float = 10.0) -> None:
        return None

    async def wait(self) -> int:
        await asyncio.Event().wait()
        return 0


def python_module_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
