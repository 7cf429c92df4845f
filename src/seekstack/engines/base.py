"""The Engine interface: what the supervisor and router need from any inference engine.

An engine is a server that speaks OpenAI HTTP on a loopback port. The interface is
small on purpose — ``start``, ``health``, ``stop``, ``base_url``, ``capabilities`` —
so that llama.cpp, vLLM and SGLang fit it alike. Everything the gateway must know
about a model (context length, embeddings, reasoning format, chat template,
sampling defaults) is carried as data in :class:`Capabilities`.

Engines register by name in :data:`ENGINES` (built-ins use the same hook users would).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ModelConfig


@dataclass(frozen=True)
class Capabilities:
    context_length: int                 # tokens per request (prompt + completion)
    slots: int = 1                      # sequences decoded together per replica
    chat: bool = True
    completions: bool = True
    embeddings: bool = False
    media_input: bool = False           # takes image / audio parts in chat messages (else text only)
    counts_tokens: bool = True          # answers /tokenize (and /apply-template) for exact prompt sizes
    reasoning_format: str = "none"      # "none" | "deepseek_r1"
    native_reasoning: bool = False      # the engine fills reasoning_content itself
    cancels_only_streams: bool = False  # notices a departed client only on streams: non-streamed answers are streamed
    chat_template: str | None = None
    sampling_defaults: dict[str, Any] = field(default_factory=dict)


class Engine(abc.ABC):
    """One running engine replica."""

    capabilities: Capabilities

    @property
    @abc.abstractmethod
    def base_url(self) -> str: ...

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin starting; return once the process exists (health says when it is ready)."""

    @abc.abstractmethod
    async def health(self) -> bool: ...

    @abc.abstractmethod
    async def stop(self, timeout: float = 10.0) -> None: ...

    # Process engines also expose these to the supervisor.
    pid: int | None = None

    @abc.abstractmethod
    async def wait(self) -> int:
        """Wait for the engine to exit; return its exit code."""


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ProcessEngine(Engine):
    """An engine that is a child process serving HTTP on a loopback port."""

    health_path = "/health"

    def __init__(self, model: ModelConfig, *, log_path: Path, socket_path: Path | None = None,
                 host: str = "127.0.0.1", http: Any = None, nice: int = 0):
        """Listen on ``socket_path`` (a Unix socket) when given, else on a free TCP port of ``host``."""
        self.model = model
        self.host = host
        self.socket_path = socket_path
        self.port = None if socket_path else free_port(host)
        self.log_path = log_path
        self.nice = nice
        self._http = http
        self._proc: asyncio.subprocess.Process | None = None
        self.capabilities = self.build_capabilities(model)

    @abc.abstractmethod
    def command(self) -> list[str]: ...

    @abc.abstractmethod
    def build_capabilities(self, model: ModelConfig) -> Capabilities: ...

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
                env={**os.environ, "SEEKSTACK_PARENT_PID": str(os.getpid())},
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

    async def health(self) -> bool:
        if self._proc is None or self._proc.returncode is not None or self._http is None:
            return False
        try:
            status, _ = await self._http.get(self.base_url, self.health_path, timeout=1.0)
            return status == 200
        except Exception:
            return False

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


EngineFactory = Callable[..., ProcessEngine]
ENGINES: dict[str, EngineFactory] = {}


def register_engine(name: str) -> Callable[[EngineFactory], EngineFactory]:
    def deco(factory: EngineFactory) -> EngineFactory:
        ENGINES[name] = factory
        return factory

    return deco


def python_module_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
