"""`seekstack serve --workers N`: N gateway processes on one port, engines supervised once
(`seekstack gateway --workers N` alike, its engines on other hosts).

The leader (this process) launches and supervises the engines — each on loopback TCP, taking
only requests that carry a key made for this start (a 0600 file in a private directory) —
and starts N `seekstack gateway` workers. Each worker is a whole gateway: its models name the
leader's engines (``engine.endpoints``, that key), it binds the same address with
SO_REUSEPORT (the kernel spreads connections over the workers), writes its own audit chain
(``<audit.dir>/worker-I``, a writer of its own), and shares the governance database and the
Redis quota counters with the others. A worker that dies is started again; SIGTERM drains
every worker, then stops the engines. A reload — SIGHUP to the leader, or `seekstack config
reload` to any worker — is the leader's, for every worker (:class:`Leader`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
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

from .. import control, statelock
from ..config import ModelConfig, Settings
from ..engines.http import EngineHTTP
from ..errors import ConfigError, SeekstackError
from ..governance.keys import write_secret_file
from ..governance.service import audit_dir
from ..planner.admission import memory_problems, room
from ..reload import Reloader, in_force, reload_on_signal
from ..supervisor import Supervisor
from .common import console, pid_running

out = console()
REUSE_PORT_ENV = "SEEKSTACK_REUSE_PORT"  # a worker binds its port with SO_REUSEPORT
RUNTIME_PREFIX = "seekstack-workers-"  # a leader's private directory in the temporary directory
WORKER_ANSWER_TRIES = 20  # × 0.5 s: how long a worker that is still starting has to listen for its leader
log = logging.getLogger("seekstack.workers")


def check_workers(settings: Settings, workers: int) -> list[str]:
    if workers == 1:
        return []
    problems = []
    if settings.quotas.store != "redis":
        problems.append("--workers needs quotas.store: redis — the workers must count quotas together "
                        "(e.g. quotas: {store: redis, redis_url: redis://127.0.0.1:6379/0})")
    problems += [f"--workers: model {model.name!r} has `autoscale`, which needs the one gateway process that sees "
                 "its load; serve it without --workers, or give it a fixed `replicas` (changed by a reload)"
                 for model in settings.models if model.autoscale is not None]
    problems += [f"--workers: model {model.name!r} has `keep_alive`, which needs the one gateway process that sees "
                 "its requests; serve it without --workers, or drop keep_alive"
                 for model in settings.models if model.keep_alive is not None]
    if settings.server.port == 0:
        problems.append("--workers needs a fixed port (every worker binds the same one): pass --port N")
    return problems


async def run_leader(settings: Settings, workers: int, lock: Path, reloader: Reloader) -> None:
    await Leader(settings, workers, reloader).run(lock)


class Leader:
    """The engines, supervised once, and the gateway workers in front of them.

    A reload (SIGHUP here, or a worker asked through the admin API) is this process's: it
    reads the config file, applies it to the engines (:meth:`Supervisor.apply`), rewrites
    every worker's config to name the engines now in force, and tells each worker to apply
    it. An old engine stops only once every worker has drained its requests from it. A
    worker that cannot apply its new config live is restarted onto it."""

    def __init__(self, settings: Settings, workers: int, reloader: Reloader):
        self.settings = settings
        remove_orphaned_runtimes()
        self.runtime = Path(tempfile.mkdtemp(prefix=RUNTIME_PREFIX))  # 0700
        (self.runtime / "leader.pid").write_text(str(os.getpid()))
        self.key_file = self.runtime / "engine.key"
        write_secret_file(self.key_file, secrets.token_hex(32).encode())
        settings.supervisor.engine_transport = "tcp"
        self._keyed(settings.models)
        self.http = EngineHTTP(read_timeout=settings.scheduler.timeout)
        self.supervisor = Supervisor(settings, self.http)
        self.reloader = reloader
        reloader.apply = self.apply
        reloader.checks.append(lambda new: check_workers(new, workers))
        reloader.sized_checks.append(functools.partial(memory_problems, within=room(settings)))
        self.procs: list[subprocess.Popen | None] = [None] * workers
        self._releases: set[asyncio.Task] = set()
        self._write_configs(settings.models)

    async def run(self, lock: Path) -> None:
        settings, procs = self.settings, self.procs
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload_on_signal(self.reloader)))
        control_server = await control.listen(self.runtime / "leader.sock", {"reload": self.reloader.reload})
        await self.supervisor.start()
        try:
            procs[0] = self._spawn(0)  # alone first: on a new database it makes the first keys
            await _listening(settings, procs[0], stopping)
            for i in range(1, len(procs)):
                procs[i] = self._spawn(i)
            statelock.record(lock, pid=os.getpid(), host=settings.server.host, port=settings.server.port)
            out.print(f"[bold green]seekstack[/] {len(procs)} gateway workers on "
                      f"http://{settings.server.host}:{settings.server.port}/v1 (pids "
                      f"{', '.join(str(p.pid) for p in procs if p)})"
                      f"{'; engines supervised here' if any(m.engine.launched for m in settings.models) else ''}",
                      soft_wrap=True)
            while not stopping.is_set():  # a worker that died is started again
                for i, proc in enumerate(procs):
                    if proc is not None and proc.poll() is not None:
                        out.print(f"[yellow]worker {i} (pid {proc.pid}) exited with {proc.returncode}; starting it again[/]")
                        procs[i] = self._spawn(i)
                try:
                    await asyncio.wait_for(stopping.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
        finally:
            control_server.close()
            running = [p for p in procs if p is not None and p.poll() is None]
            for proc in running:
                proc.send_signal(signal.SIGTERM)  # each drains its requests in flight
            deadline = loop.time() + settings.server.drain_timeout + 10
            for proc in running:
                while proc.poll() is None and loop.time() < deadline:
                    await asyncio.sleep(0.1)
                if proc.poll() is None:
                    proc.kill()
            await self.supervisor.stop()
            await self.http.close()
            shutil.rmtree(self.runtime, ignore_errors=True)

    async def apply(self, models: list[ModelConfig], changed: set[str]) -> dict[str, list[str]]:
        """The Reloader's apply here: the engines, then every worker (see the class)."""
        self._keyed(models)
        released = asyncio.Event()
        result = await self.supervisor.apply(models, changed, hold=released.wait)
        self._write_configs(in_force(self.settings.models, models, set(result["failed"])))
        told = list(self.procs)
        live = await asyncio.gather(*(self._reload_worker(i, proc) for i, proc in enumerate(told)))
        release = asyncio.create_task(self._release_when_drained(released, told, live))
        self._releases.add(release)
        release.add_done_callback(self._releases.discard)
        return result

    async def _reload_worker(self, i: int, proc: subprocess.Popen | None) -> bool:
        """Tell worker ``i`` to apply its config; False if it could not, and is restarting onto it."""
        if proc is None or proc.poll() is not None:
            return True  # not running: it starts with the new config
        for _ in range(WORKER_ANSWER_TRIES):  # a worker still starting listens a moment later
            try:
                result = await control.ask(self._socket(i), "reload", self.settings.supervisor.startup_timeout + 30)
            except control.Unreachable as exc:
                problem = str(exc)
                await asyncio.sleep(0.5)
                continue
            except SeekstackError as exc:
                problem = exc.message
            else:
                if not result["failed"]:
                    return True
                problem = f"its engines for {', '.join(result['failed'])} did not answer"
            break
        log.warning("worker %d could not apply the new config (%s); restarting it onto it", i, problem)
        proc.send_signal(signal.SIGTERM)  # it drains; the run loop starts it again
        return False

    async def _release_when_drained(self, released: asyncio.Event, told: list[subprocess.Popen | None],
                                    live: list[bool]) -> None:
        """Let old engines stop once no worker told of the change has a request on them: each
        has drained them, or (restarted onto the change) has exited after draining everything."""
        async def drained(i: int, proc: subprocess.Popen | None) -> None:
            if proc is None or proc.poll() is not None:
                return
            if not live[i]:
                while proc.poll() is None:
                    await asyncio.sleep(0.1)
                return
            try:
                await control.ask(self._socket(i), "drained", self.settings.server.drain_timeout + 5)
            except SeekstackError as exc:  # gone meanwhile: nothing of it is left in flight
                log.warning("worker %d: %s", i, exc.message)

        try:
            await asyncio.gather(*(drained(i, proc) for i, proc in enumerate(told)))
        finally:
            released.set()

    def _keyed(self, models: list[ModelConfig]) -> None:
        """The engines launched here take only requests that carry this start's key."""
        for model in models:
            if model.engine.launched:
                model.engine.api_key_file = self.key_file

    def _write_configs(self, models: list[ModelConfig]) -> None:
        """Every worker's config: these models, each launched one naming the engines here; an
        audit chain of its own. A worker (re)started from now on reads it."""
        data = self.settings.model_dump(mode="json", exclude_none=True)
        data["models"] = []
        for model in models:
            entry = model.model_dump(mode="json", exclude_none=True)
            if model.engine.launched:
                entry["engine"].update(endpoints=[r.engine.base_url for r in self.supervisor.replicas[model.name]],
                                       api_key_file=str(self.key_file))
            data["models"].append(entry)
        for index in range(len(self.procs)):
            data["audit"]["dir"] = str(audit_dir(self.settings) / f"worker-{index}")  # one chain per writer
            write_secret_file(self.runtime / f"worker-{index}.yaml", yaml.safe_dump(data).encode())

    def _socket(self, index: int) -> Path:
        return self.runtime / f"worker-{index}.sock"

    def _spawn(self, index: int) -> subprocess.Popen:
        """Worker ``index``, on the engines' lifeline: it dies with this process (an orphan would
        hold the port with no engine behind it)."""
        lifeline = [sys.executable, "-m", "seekstack.engines.lifeline", str(os.getpid()), "--"]
        return subprocess.Popen([*lifeline, sys.executable, "-m", "seekstack", "gateway",
                                 "--config", str(self.runtime / f"worker-{index}.yaml")],
                                stdin=subprocess.DEVNULL, env={**os.environ, REUSE_PORT_ENV: "1",
                                                               control.LEADER_ENV: str(self.runtime / "leader.sock"),
                                                               control.CONTROL_ENV: str(self._socket(index))})


def remove_orphaned_runtimes() -> None:
    """Remove what leaders killed outright left behind (their engines' key, their workers'
    configs): each runtime directory of this user whose leader is no longer running."""
    for runtime in Path(tempfile.gettempdir()).glob(RUNTIME_PREFIX + "*"):
        try:
            if runtime.stat().st_uid != os.getuid():
                continue
            pid = int((runtime / "leader.pid").read_text())
        except (OSError, ValueError):
            continue  # not ours, or a leader still between mkdtemp and writing its pid
        if not pid_running(pid):
            shutil.rmtree(runtime, ignore_errors=True)


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
