"""`seekstack serve --workers N`: N gateway processes on one port, engines supervised once.

The leader (this process) launches and supervises the engines — each on loopback TCP, taking
only requests that carry a key made for this start (a 0600 file in a private directory) —
and starts N `seekstack gateway` workers. Each worker is a whole gateway: its models name the
leader's engines (``engine.endpoints``, that key), it binds the same address with
SO_REUSEPORT (the kernel spreads connections over the workers), writes its own audit chain
(``<audit.dir>/worker-I``, a writer of its own), and shares the governance database and the
Redis quota counters with the others. A worker that dies is started again; SIGTERM drains
every worker, then stops the engines.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import yaml

from .. import statelock
from ..config import Settings
from ..engines.http import EngineHTTP
from ..errors import ConfigError
from ..governance.keys import write_secret_file
from ..governance.service import audit_dir
from ..supervisor import Supervisor
from .common import console

out = console()
REUSE_PORT_ENV = "SEEKSTACK_REUSE_PORT"  # a worker binds its port with SO_REUSEPORT


def check_workers(settings: Settings, workers: int) -> list[str]:
    problems = []
    if workers > 1 and settings.quotas.store != "redis":
        problems.append("--workers needs quotas.store: redis — the workers must count quotas together "
                        "(e.g. quotas: {store: redis, redis_url: redis://127.0.0.1:6379/0})")
    if workers > 1 and settings.server.port == 0:
        problems.append("--workers needs a fixed port (every worker binds the same one): pass --port N")
    return problems


async def run_leader(settings: Settings, workers: int, lock: Path) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="seekstack-workers-"))  # 0700
    key_file = runtime / "engine.key"
    write_secret_file(key_file, secrets.token_hex(32).encode())
    settings.supervisor.engine_transport = "tcp"
    for model in settings.models:
        if model.engine.launched:
            model.engine.api_key_file = key_file
    http = EngineHTTP(read_timeout=settings.scheduler.timeout)
    supervisor = Supervisor(settings, http)
    configs = [_worker_config(settings, supervisor, key_file, runtime, i) for i in range(workers)]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: out.print(
        "[yellow]SIGHUP: hot reload is not supported with --workers yet; restart to apply a changed config[/]"))
    await supervisor.start()
    procs: list[subprocess.Popen | None] = [None] * workers
    try:
        procs[0] = _spawn(configs[0])  # alone first: on a new database it makes the first keys
        await _listening(settings, procs[0], stopping)
        for i in range(1, workers):
            procs[i] = _spawn(configs[i])
        statelock.record(lock, pid=os.getpid(), host=settings.server.host, port=settings.server.port)
        out.print(f"[bold green]seekstack[/] {workers} gateway workers on "
                  f"http://{settings.server.host}:{settings.server.port}/v1 (pids "
                  f"{', '.join(str(p.pid) for p in procs if p)}); engines supervised here", soft_wrap=True)
        while not stopping.is_set():  # a worker that died is started again
            for i, proc in enumerate(procs):
                if proc is not None and proc.poll() is not None:
                    out.print(f"[yellow]worker {i} (pid {proc.pid}) exited with {proc.returncode}; starting it again[/]")
                    procs[i] = _spawn(configs[i])
            try:
                await asyncio.wait_for(stopping.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
    finally:
        running = [p for p in procs if p is not None and p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)  # each drains its requests in flight
        deadline = loop.time() + settings.server.drain_timeout + 10
        for proc in running:
            while proc.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.1)
            if proc.poll() is None:
                proc.kill()
        await supervisor.stop()
        await http.close()
        shutil.rmtree(runtime, ignore_errors=True)


def _worker_config(settings: Settings, supervisor: Supervisor, key_file: Path, runtime: Path, index: int) -> Path:
    data = settings.model_dump(mode="json", exclude_none=True)
    for entry, model in zip(data["models"], settings.models):
        if model.engine.launched:
            entry["engine"].update(endpoints=[r.engine.base_url for r in supervisor.replicas[model.name]],
                                   api_key_file=str(key_file))
    data["audit"]["dir"] = str(audit_dir(settings) / f"worker-{index}")  # one chain per writer
    path = runtime / f"worker-{index}.yaml"
    write_secret_file(path, yaml.safe_dump(data).encode())
    return path


def _spawn(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seekstack", "gateway", "--config", str(config)],
                            stdin=subprocess.DEVNULL, env={**os.environ, REUSE_PORT_ENV: "1"})


async def _listening(settings: Settings, proc: subprocess.Popen, stopping: asyncio.Event) -> None:
    url = f"{'https' if settings.server.tls else 'http'}://{settings.server.host}:{settings.server.port}/healthz"
    async with httpx.AsyncClient(verify=False, timeout=1) as client:  # loopback, our own worker: no identity to check
        while not stopping.is_set():
            if proc.poll() is not None:
                raise ConfigError(f"the first gateway worker exited with {proc.returncode}", fix="see its output above")
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
