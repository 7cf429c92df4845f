"""Supervise engine replicas: start them, heartbeat them, restart them with backoff, stop them.

The supervisor is a source of the registry of deployments (:mod:`seekstack.registry`): each
configured model is one deployment, ``local`` when this host launches its engines, ``static``
when they run elsewhere (``engine.url`` / ``engine.endpoints``) and are only heartbeated.

Each replica runs in its own task. A replica is routable only while its state is
``ready``: the moment its process exits the state leaves ``ready`` (the router
stops using it immediately), then it is restarted after an exponential backoff.

A configured model can be unloaded (its replicas stopped, their memory freed, the state
``unloaded``) and loaded again while the server runs (``seekstack models unload|load NAME``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from .config import ModelConfig, Settings, dns_server, is_loopback
from .engines import Backend, Health, Load
from .engines.backend import DEGRADED, DOWN, STARTING as ENGINE_STARTING
from .engines.base import Engine, ExternalEngine
from .engines.keys import read_api_key
from .engines.registry import engine_kind, missing_package
from .errors import ConfigError
from .registry import Deployment
from .registry.discovery import DnsDiscovery
from .traffic.breaker import CLOSED, OPEN, Breaker

log = logging.getLogger("seekstack.supervisor")

STARTING, READY, RESTARTING, STOPPED = "starting", "ready", "restarting", "stopped"
UNLOADED, DRAINING = "unloaded", "draining"
EJECTED, PROBING = "ejected", "probing"  # ready, but its breaker is open / half-open (`status`)
HOLD_SLACK = 10.0  # seconds a drain's hold may outlast the drain timeout (workers drain theirs first)
Hold = Callable[[], Awaitable[None]]  # what else must finish before a drained replica stops
REPLACE_HUNG_AFTER = 30.0  # seconds without a health answer before a local engine is restarted


@dataclass(eq=False)
class Replica:
    model: ModelConfig
    index: int
    engine: Engine              # the lifecycle: start, wait, stop
    backend: Backend            # the request path, in the engine's dialect
    state: str = STARTING
    health: Health = Health(ENGINE_STARTING)
    load: Load = Load()
    restarts: int = 0
    started_at: float = 0.0
    outstanding: int = 0
    last_exit: int | None = None
    retired: bool = False       # drained out of service: never restarted again
    breaker: Breaker = field(default_factory=Breaker)
    leases: set = field(default_factory=set)  # requests in flight on it (gateway/upstream.py Lease)
    waiting: set = field(default_factory=set)  # requests sent to it, their answer's head not in yet (tasks)
    deployment: str = ""        # the name of the deployment it belongs to (its queue)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return f"{self.model.name}/{self.index}"

    @property
    def port(self) -> int | None:
        return self.engine.port

    @property
    def routable(self) -> bool:
        return self.state == READY and self.breaker.allows

    @property
    def status(self) -> str:
        """The state as operators read it: a ready endpoint whose breaker is open is ``ejected``;
        half-open, ``probing``."""
        if self.state != READY or self.breaker.state == CLOSED:
            return self.state
        return EJECTED if self.breaker.state == OPEN else PROBING

    def fail(self, reason: str, abort: bool = False) -> bool:
        """This endpoint failed: eject it at once. ``abort``: break off the requests in flight on
        it too (it stopped answering), so that they go on elsewhere. True when it was serving."""
        if not self.breaker.trip(reason):
            return False
        log.warning("endpoint %s ejected: %s", self.name, reason)
        if abort:
            for lease in list(self.leases):
                lease.abort(f"endpoint {self.name} was ejected: {reason}")
            for send in list(self.waiting):
                send.cancel()
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model.name,
            "replica": self.index,
            "engine": self.model.engine.kind,
            "simulated": self.model.engine.simulated,
            "state": self.status,
            "breaker": self.breaker.describe(),
            "health": {"state": self.health.state, "reason": self.health.reason},
            "load": self.load.to_json(),
            "pid": self.engine.pid,
            "port": self.engine.port,
            "base_url": self.engine.base_url,
            "restarts": self.restarts,
            "outstanding": self.outstanding,
            "uptime_s": round(time.monotonic() - self.started_at, 1) if self.state == READY else 0.0,
            "memory_bytes": _rss(self.engine.pid),
        }


def _rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except Exception:
        return None


class Supervisor:
    def __init__(self, settings: Settings, http: Any):
        self.settings = settings
        self.cfg = settings.supervisor
        self.http = http
        self.replicas: dict[str, list[Replica]] = {}
        self._deployments: dict[str, Deployment] = {}
        self._socket_ids = itertools.count()
        self._draining: dict[asyncio.Task, list[Replica]] = {}  # replicas out of the registry, finishing
        self._tasks: dict[Replica, asyncio.Task] = {}
        self._rollouts: set[str] = set()  # deployments beside a model's own: a canary, a green (traffic/rollout.py)
        self._followers: dict[str, asyncio.Task] = {}  # deployment → its `engine.discover` lookups
        self._discovery: DnsDiscovery | None = None
        self._stopping = False
        # Engine sockets live in a private directory (mkdtemp: 0700), short enough for AF_UNIX paths.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="seekstack-")) if self.cfg.engine_transport == "unix" else None
        for model in settings.models:
            self._publish(model, self._replicas_of(model))

    def _replicas_of(self, model: ModelConfig, first: int = 0, found: list[str] | None = None) -> list[Replica]:
        """A model's replicas: ``replicas`` engines to start, or one per address — of its config, or
        ``found`` for an ``engine.discover`` model (none until its name is looked up)."""
        missing = missing_package(model.engine)
        if missing is not None:
            raise ConfigError(f"model {model.name}: {missing.partition(' — ')[0]}", fix=missing.partition(" — ")[2])
        addresses = (found or []) if model.engine.discover else model.engine.addresses
        count = model.replicas if model.engine.launched else len(addresses)
        return [self._replica(model, first + i, self.settings.state_path / "logs", None if model.engine.launched
                              else addresses[i]) for i in range(count)]

    def _publish(self, model: ModelConfig, replicas: list[Replica]) -> list[Replica]:
        """Make ``replicas`` the model's (the registry sees them at once); return the ones they replace."""
        old = self.replicas.get(model.name, [])
        self.replicas[model.name] = replicas
        self._deployments[model.name] = deployment_of(model, replicas)
        return old

    # ------------------------------------------------------------ hot reload

    async def apply(self, models: list[ModelConfig], changed: set[str],
                    hold: Hold | None = None, unloaded: tuple[str, ...] | list[str] = ()) -> dict[str, list[str]]:
        """Serve ``models`` from now on, without dropping a request in flight.

        A new model starts at once (its requests get 503 until a replica is ready). A model in
        ``changed`` gets new replicas first; once one is ready they take its traffic and the old
        ones drain in the background — requests in flight finish, then they stop. If none gets
        ready within ``startup_timeout``, the old ones stay and the model is listed as failed.
        A removed model leaves the registry at once and drains the same way.

        ``hold``: what else must finish before an old replica stops — a `--workers` leader's
        engines carry its workers' requests, not its own (``cli/workers.py``). ``unloaded``: models
        loaded later, on demand (traffic/keep_alive.py) — a new one is added unloaded, and a changed
        one whose replicas are all unloaded now is replaced at once by unloaded ones."""
        wanted = {m.name: m for m in models}
        added = [m for m in models if m.name not in self.replicas]
        removed = [name for name in self.replicas if name not in wanted and name not in self._rollouts]
        asleep = {name for name in unloaded
                  if all(r.state == UNLOADED for r in self.replicas.get(name, []))}  # all([]): a new one
        fresh = {m.name: self._replicas_of(m, found=[r.engine.base_url for r in self.replicas.get(m.name, [])])
                 for m in [*added, *(wanted[n] for n in changed if n in self.replicas)]}
        for replica in (r for group in fresh.values() for r in group):
            if replica.model.name in asleep:
                replica.state = UNLOADED
            else:
                self._run(replica)
        for model in added:
            self._publish(model, fresh[model.name])
            self._follow(model.name)
        failed = []
        replacing = [name for name in changed if name in self.replicas and name in fresh]
        ready = await asyncio.gather(*(self._first_ready(fresh[name]) for name in replacing))
        for name, ok in zip(replacing, ready):
            if ok:
                self._drain(self._publish(wanted[name], fresh[name]), hold)
                self._follow(name)  # (a model that names its engines by DNS now)
            else:
                failed.append(name)
                self._drain(fresh[name])
        for name in removed:
            self._drain(self.replicas.pop(name), hold)
            del self._deployments[name]
        order = {m.name: i for i, m in enumerate(models)}  # the registry lists models as the config does
        self._deployments = dict(sorted(self._deployments.items(), key=lambda item: order.get(item[0], len(order))))
        log.info("config applied: added %s, replaced %s, removed %s, failed %s",
                 [m.name for m in added], [n for n in replacing if n not in failed], removed, failed)
        return {"added": [m.name for m in added], "changed": [n for n in replacing if n not in failed],
                "removed": removed, "failed": failed}

    async def _first_ready(self, group: list[Replica]) -> bool:
        # a discovered model whose name has no engines now, or one left unloaded (loaded on
        # demand): nothing to wait for
        if all(r.state == UNLOADED for r in group):
            return True
        waits = [asyncio.ensure_future(r._ready.wait()) for r in group]
        try:
            await asyncio.wait_for(asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED), self.cfg.startup_timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            for wait in waits:
                wait.cancel()
        return any(r.routable for r in group)

    def _drain(self, group: list[Replica], hold: Hold | None = None) -> None:
        """Out of the registry already: let their requests in flight finish, then stop them."""
        task = asyncio.create_task(self._drain_then_stop(group, hold))
        self._draining[task] = group
        task.add_done_callback(lambda done: self._draining.pop(done, None))

    async def drained(self) -> None:
        """Return once every replica taken out of the registry so far has drained and stopped."""
        await asyncio.gather(*self._draining, return_exceptions=True)

    async def _drain_then_stop(self, group: list[Replica], hold: Hold | None = None) -> None:
        for replica in group:
            replica.retired = True  # if it exits while draining, it stays down
            if replica.state == READY:
                replica.state = DRAINING
        deadline = time.monotonic() + self.settings.server.drain_timeout
        while any(r.outstanding for r in group) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if hold is not None:
            try:
                await asyncio.wait_for(hold(), max(deadline - time.monotonic(), 0) + HOLD_SLACK)
            except asyncio.TimeoutError:
                log.warning("stopping %s: still held after the drain timeout", ", ".join(r.name for r in group))
        tasks = [self._tasks.pop(r) for r in group if r in self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(r.engine.stop() for r in group), return_exceptions=True)
        for replica in group:
            replica.state = STOPPED
        log.info("drained and stopped %s", ", ".join(r.name for r in group))

    # ------------------------------------------------------------ rollouts

    def add_deployment(self, name: str, model: ModelConfig, weight: int) -> list[Replica]:
        """Start another deployment of ``model.name`` beside its own (a canary, a green): its
        replicas start now, numbered after every replica the model has, and it takes ``weight``
        of the model's traffic (against its own deployment's) once one is ready."""
        replicas = self._replicas_of(model, first=max(self._indices(model.name), default=-1) + 1)
        self.replicas[name] = replicas
        self._deployments[name] = deployment_of(model, replicas, name=name, weight=weight)
        self._rollouts.add(name)
        for replica in replicas:
            self._run(replica)
        self._follow(name)
        return replicas

    def _indices(self, model: str) -> set[int]:
        """Replica numbers the model uses now, over its deployments and those still draining
        (a new replica takes another: its log file and port are its own)."""
        return {r.index for group in [*self.replicas.values(), *self._draining.values()] for r in group
                if r.model.name == model}

    def set_weight(self, name: str, weight: int) -> None:
        self._deployments[name].weight = weight

    def retire(self, name: str) -> None:
        """Take a deployment out at once; its requests in flight finish, then it stops."""
        group = self.replicas.pop(name)
        del self._deployments[name]
        self._rollouts.discard(name)
        self._drain(group)

    def promote(self, name: str) -> None:
        """Make deployment ``name`` its model's own, in one step: every new request goes to it;
        the one it replaces drains (nothing in flight is dropped)."""
        group, deployment = self.replicas.pop(name), self._deployments.pop(name)
        self._rollouts.discard(name)
        self._drain(self._publish(deployment.model, group))

    async def scale(self, name: str, count: int) -> None:
        """Run ``count`` replicas of model ``name`` from now (the autoscaler's actuator). New ones
        start and take traffic once ready; surplus ones (the newest first) leave the registry at
        once and drain before they stop."""
        group = self.group(name)
        model = group[0].model
        if count > len(group):
            taken = self._indices(name)
            free = (i for i in itertools.count() if i not in taken)
            fresh = [self._replica(model, next(free), self.settings.state_path / "logs") for _ in range(count - len(group))]
            for replica in fresh:
                self._run(replica)
            self._publish(model, group + fresh)
        elif count < len(group):
            ordered = sorted(group, key=lambda r: (r.routable, -r.index))  # not-ready ones go first, then the newest
            surplus = ordered[:len(group) - count]
            self._publish(model, [r for r in group if r not in surplus])
            self._drain(surplus)

    def _replica(self, model: ModelConfig, index: int, logs: Path, address: str | None = None) -> Replica:
        kind = engine_kind(model.engine.kind)
        if not model.engine.launched or kind.process is None:
            engine: Engine = ExternalEngine(address or model.engine.addresses[index])
            return Replica(model, index, engine, kind.backend(self.http, engine.base_url, model,
                                                             api_key=read_api_key(model.engine)), breaker=self._breaker())
        socket = self._socket(model, index) if kind.process.uses_unix_socket else None
        # An engine on TCP takes only requests carrying a key: the configured one (shared with
        # gateways on other hosts), else one made now that only this gateway holds (hex: never
        # read as a flag). llama.cpp on loopback TCP (`engine_transport: tcp`, which the
        # benchmarks use to reach the engine directly) takes none unless one is configured.
        open_on_loopback = kind.process.uses_unix_socket and is_loopback(model.engine.host)
        key = None if socket else read_api_key(model.engine) or (None if open_on_loopback else secrets.token_hex(32))
        process = kind.process(model, log_path=logs / f"{_safe(model.name)}-{index}.log", socket_path=socket,
                               port=model.engine.port + index if model.engine.port else None,
                               nice=self.cfg.engine_nice, api_key=key)
        if model.engine.simulated:
            log.warning("model %s replica %d: SIMULATED — `seekstack sim` stands in for %s (no model runs)",
                        model.name, index, kind.name)
        return Replica(model, index, process, kind.backend(self.http, process.base_url, model, api_key=key),
                       breaker=self._breaker())

    def _breaker(self) -> Breaker:
        return Breaker(eject_for=self.cfg.eject_for, eject_max=self.cfg.eject_max)

    def _socket(self, model: ModelConfig, index: int) -> Path | None:
        """A private Unix socket, for an engine only this host's gateway talks to (a loopback
        engine with no fixed port); None: TCP."""
        if self.runtime_dir is None or model.engine.port or not is_loopback(model.engine.host):
            return None
        return self.runtime_dir / f"{next(self._socket_ids)}.sock"

    def deployments(self) -> list[Deployment]:
        return list(self._deployments.values())

    def all(self) -> list[Replica]:
        return [r for group in self.replicas.values() for r in group]

    async def start(self, unloaded: tuple[str, ...] | list[str] = ()) -> None:
        """Start every replica, but those of the ``unloaded`` models (loaded later, on demand)."""
        for replica in self.all():
            if replica.model.name in unloaded:
                replica.state = UNLOADED
            else:
                self._run(replica)
        for name in list(self._deployments):
            self._follow(name)

    # ------------------------------------------------------------ engines found by DNS

    def _follow(self, name: str) -> None:
        """Look up deployment ``name``'s ``engine.discover`` name now and every ``discover_every``
        seconds, while the deployment exists (a promoted canary's lookups go on under its model's name)."""
        deployment = self._deployments.get(name)
        if deployment is None or deployment.model.engine.discover is None or name in self._followers:
            return
        if self._discovery is None:
            self._discovery = DnsDiscovery([dns_server(s) for s in self.cfg.dns_servers])
        task = asyncio.create_task(self._lookups(name))
        self._followers[name] = task

        def gone(done: asyncio.Task) -> None:
            if self._followers.get(name) is done:
                del self._followers[name]

        task.add_done_callback(gone)

    async def _lookups(self, name: str) -> None:
        while not self._stopping and name in self._deployments:
            url = self._deployments[name].model.engine.discover
            if url is None:
                return
            try:
                found = await self._discovery.endpoints(url)
                if found is not None and name in self._deployments and not self._stopping:
                    self._settle(name, found)
            except Exception as exc:  # a fault here must not end the lookups for good: the next turn tries again
                log.error("engine discovery for %s failed: %s: %s", name, type(exc).__name__, exc)
            await asyncio.sleep(self.cfg.discover_every)

    def _settle(self, name: str, found: list[str]) -> None:
        """Make deployment ``name``'s endpoints the engines at ``found``: new ones start being
        heartbeated (and take requests once ready), gone ones leave the registry and drain."""
        deployment, group = self._deployments[name], self.replicas[name]
        gone = [r for r in group if r.engine.base_url not in found]
        have = {r.engine.base_url for r in group}
        new = [url for url in found if url not in have]
        if not gone and not new:
            return
        taken = self._indices(deployment.model.name)
        free = (i for i in itertools.count() if i not in taken)
        fresh = [self._replica(deployment.model, next(free), self.settings.state_path / "logs", url) for url in new]
        for replica in fresh:
            self._run(replica)
        kept = [r for r in group if r not in gone] + fresh
        self.replicas[name] = kept
        self._deployments[name] = deployment_of(deployment.model, kept, name=deployment.name, weight=deployment.weight)
        if gone:
            self._drain(gone)
        log.info("model %s: engines found at %s%s", deployment.model.name, ", ".join(new) or "none new",
                 f"; gone (draining): {', '.join(r.engine.base_url for r in gone)}" if gone else "")

    def _run(self, replica: Replica) -> None:
        replica.state, replica._ready = STARTING, asyncio.Event()
        self._tasks[replica] = asyncio.create_task(self._supervise(replica), name=f"supervise {replica.name}")

    async def unload(self, model: str) -> list[Replica]:
        """Stop a model's replicas and keep them stopped (requests get 503 naming the fix) until :meth:`load`."""
        group = self.group(model)
        tasks = [self._tasks.pop(r) for r in group if r in self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(r.engine.stop() for r in group), return_exceptions=True)
        for replica in group:
            replica.state = UNLOADED
        log.info("model %s unloaded", model)
        return group

    async def load(self, model: str, timeout: float | None = None) -> bool:
        """Start an unloaded model's replicas again; True once one of them is ready."""
        group = self.group(model)
        for replica in group:
            if replica not in self._tasks:
                self._run(replica)
        try:
            await asyncio.wait_for(asyncio.wait([asyncio.ensure_future(r._ready.wait()) for r in group],
                                                return_when=asyncio.FIRST_COMPLETED),
                                   timeout or self.cfg.startup_timeout)
        except asyncio.TimeoutError:
            return False
        return any(r.routable for r in group)

    def group(self, model: str) -> list[Replica]:
        """A model's replicas (or a rollout deployment's, by its name); 404 naming the configured models."""
        group = self.replicas.get(model)
        if group is None:
            from .errors import ModelNotFoundError

            raise ModelNotFoundError(f"model {model!r} is not configured; configured: {', '.join(self.replicas)}",
                                     fix="add it to seekstack.yaml and restart (or name a configured model)")
        return group

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until every replica has been ready once (or the timeout passes); unloaded ones aside."""
        waits = [r._ready.wait() for r in self.all() if r.state != UNLOADED]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def stop(self) -> None:
        self._stopping = True
        followers = list(self._followers.values())
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        draining = [r for group in self._draining.values() for r in group]
        for task in list(self._draining):
            task.cancel()
        await asyncio.gather(*self._draining, return_exceptions=True)
        await asyncio.gather(*(r.engine.stop() for r in draining), return_exceptions=True)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(r.engine.stop() for r in self.all()), return_exceptions=True)
        for replica in self.all():
            replica.state = STOPPED
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    # ------------------------------------------------------------ one replica

    async def _supervise(self, replica: Replica) -> None:
        delay = self.cfg.backoff_initial
        while not self._stopping:
            replica.state = STARTING if replica.restarts == 0 else RESTARTING
            await replica.engine.start()
            exited = asyncio.ensure_future(replica.engine.wait())
            healthy_since = await self._until_healthy(replica, exited)
            if healthy_since is not None:
                await self._heartbeat(replica, exited)
                if time.monotonic() - healthy_since >= self.cfg.stable_after:
                    delay = self.cfg.backoff_initial
            else:
                await replica.engine.stop()
            if not exited.done():
                exited.cancel()
            replica.last_exit = exited.result() if exited.done() and not exited.cancelled() else None
            if self._stopping or replica.retired:
                return
            replica.state = RESTARTING
            replica.restarts += 1
            # an engine that never came up: its own last words say why (a missing library, a bad option)
            why = None if healthy_since is not None else await asyncio.to_thread(
                _last_line, getattr(replica.engine, "log_path", None))
            log.warning("replica %s exited (code %s)%s; restarting in %.1fs", replica.name, replica.last_exit,
                        f" before it was ready: {why}" if why else "", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.cfg.backoff_max)

    async def _until_healthy(self, replica: Replica, exited: asyncio.Future) -> float | None:
        deadline = time.monotonic() + self.cfg.startup_timeout
        while time.monotonic() < deadline:
            if exited.done():
                return None
            if await self._check(replica, timeout=max(self.cfg.health_timeout, 1.0)):
                replica.breaker.reset()
                replica.state = READY
                replica.started_at = time.monotonic()
                replica._ready.set()
                log.info("replica %s ready on %s (pid %s)", replica.name, replica.engine.base_url, replica.engine.pid)
                return replica.started_at
            await asyncio.wait({exited}, timeout=0.1)
        log.error("replica %s did not become healthy within %.0fs", replica.name, self.cfg.startup_timeout)
        return None

    async def _heartbeat(self, replica: Replica, exited: asyncio.Future) -> None:
        """Check the endpoint every heartbeat; return when the process has exited (or was stopped
        for not answering for ``REPLACE_HUNG_AFTER`` seconds).

        A check that fails is sent again at once: two failures in a row eject the endpoint (its
        breaker opens); a check that passes lets an ejected endpoint be tried again once its
        time is up (half-open)."""
        silent_since: float | None = None
        while True:
            done, _ = await asyncio.wait({exited}, timeout=self.cfg.heartbeat_interval)
            if done:
                replica.state = RESTARTING  # stop routing at once
                return
            if await self._check(replica) or await self._check(replica):
                silent_since = None
                replica.breaker.probe_passed()
                continue
            if exited.done():
                continue
            replica.fail(replica.health.reason or "the engine failed two health checks in a row", abort=True)
            silent_since = silent_since or time.monotonic()
            if replica.engine.pid is not None and time.monotonic() - silent_since >= REPLACE_HUNG_AFTER:
                log.warning("replica %s has not answered for %.0f s; restarting it", replica.name, REPLACE_HUNG_AFTER)
                await replica.engine.stop()

    async def _check(self, replica: Replica, timeout: float | None = None) -> bool:
        """Ask the engine how it is (and, when it serves, how loaded it is)."""
        if not replica.engine.alive():
            replica.health = Health(DOWN, "the engine process is not running")
            return False
        timeout = timeout or self.cfg.health_timeout
        health = await replica.backend.health(timeout)
        if health.serving:
            replica.load = await replica.backend.load(timeout)
            strain = replica.load.strain()
            if strain is not None:  # still serving, but saturated: say so (ps, /admin/v1/replicas)
                health = Health(DEGRADED, strain)
        replica.health = health
        return health.serving


def deployment_of(model: ModelConfig, replicas: list[Replica], name: str | None = None, weight: int = 100) -> Deployment:
    version = model.store.partition("@")[2] or None if model.store else None
    source = "local" if model.engine.launched else "discovered" if model.engine.discover else "static"
    return Deployment(alias=model.name, name=name or model.name, model=model, endpoints=replicas, version=version,
                      weight=weight, source=source)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _last_line(path: Path | None, limit: int = 300) -> str | None:
    """The last line an engine wrote to its log (at most ``limit`` characters), if any."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1][:limit] if lines else None
