"""Keep-alive: a model unloaded when idle for ``keep_alive`` seconds, loaded by its next request.

Ollama's ``keep_alive`` for the engines this host starts: a model that had no request in flight
or waiting for ``keep_alive`` seconds is unloaded (its replicas stopped, their memory freed,
state ``unloaded``), and the next request for it loads it again and waits until a replica is
ready (``supervisor.startup_timeout`` at most; requests that arrive meanwhile wait for the same
load). Each unload and load is a log line and an audit record, with the idle time or the wait.

A model an operator unloaded (``seekstack models unload``) stays unloaded until ``seekstack
models load``: only what this module unloaded is loaded on demand (:meth:`KeepAlive.forget`).

Idle is measured from the later of: the model's last answer started (the router's outcomes),
the last time this loop saw a request in flight or queued (sampled every ``every`` seconds, so
a stream longer than ``keep_alive`` keeps it loaded), and the moment a replica became ready.
The request path pays one dict lookup (:attr:`Router.sleeping`).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from ..errors import EngineUnavailableError

if TYPE_CHECKING:
    from ..registry import Deployment, Registry
    from .router import Router

log = logging.getLogger("seekstack.keep_alive")


class Loader(Protocol):
    """What unloads and loads a model's replicas: the supervisor."""

    async def unload(self, model: str) -> Any: ...

    async def load(self, model: str, timeout: float | None = None) -> bool: ...


class KeepAlive:
    def __init__(self, registry: "Registry", router: "Router", loader: Loader,
                 audit: Callable[[dict[str, Any]], Awaitable[None]] | None = None, every: float = 1.0):
        self.registry = registry
        self.router = router
        self.loader = loader
        self.audit = audit
        self.every = every
        self.busy_at: dict[str, float] = {}                     # model → last seen with requests (monotonic)
        self.actions: collections.Counter[tuple[str, str]] = collections.Counter()  # (model, unload|load): metrics
        self._unloading: dict[str, asyncio.Task[None]] = {}
        self._loading: dict[str, asyncio.Task[bool]] = {}

    def timeouts(self) -> dict[str, tuple[float, "Deployment"]]:
        """The models with a ``keep_alive``, each served by one local deployment (not mid-rollout)."""
        found: dict[str, list["Deployment"]] = {}
        for deployment in self.registry.deployments():
            found.setdefault(deployment.alias, []).append(deployment)
        return {alias: (ds[0].model.keep_alive, ds[0]) for alias, ds in found.items()
                if len(ds) == 1 and ds[0].source == "local" and ds[0].model.keep_alive is not None}

    def idle_for(self, deployment: "Deployment", now: float) -> float | None:
        """Seconds since the model last had work; None while it has some, or is not all ready."""
        queue = self.router.queues.get(deployment.name)
        if any(e.outstanding for e in deployment.endpoints) or (queue is not None and queue.waiting):
            self.busy_at[deployment.alias] = now
            return None
        if not deployment.endpoints or any(e.state != "ready" for e in deployment.endpoints):
            return None  # starting, restarting or already unloaded: nothing to decide
        outcomes = self.router.outcomes.get(deployment.name)
        last = max(self.busy_at.get(deployment.alias, 0.0), outcomes.last() if outcomes else 0.0,
                   max(e.started_at for e in deployment.endpoints))
        return now - last

    def expires_in(self, model: str) -> float | None:
        """Seconds until the model is unloaded if no request comes; None when it has no keep_alive."""
        found = self.timeouts().get(model)
        if found is None:
            return None
        keep_alive, deployment = found
        idle = self.idle_for(deployment, time.monotonic())
        return keep_alive if idle is None else max(0.0, keep_alive - idle)

    def step(self, now: float | None = None) -> list[tuple[str, float]]:
        """Unload every model idle for its ``keep_alive``; the (model, idle seconds) unloaded.
        Nothing is awaited between the check and :attr:`Router.sleeping`: a request that comes
        after it waits for the load, none is sent to an engine that is stopping."""
        now = time.monotonic() if now is None else now
        unloaded = []
        for model, (keep_alive, deployment) in self.timeouts().items():
            if model in self.router.sleeping:
                continue
            idle = self.idle_for(deployment, now)
            if idle is not None and idle >= keep_alive:
                self.router.sleeping[model] = functools.partial(self.wake, model)
                self._unloading[model] = asyncio.create_task(self._unload(model, idle), name=f"unload {model}")
                unloaded.append((model, idle))
        return unloaded

    async def _unload(self, model: str, idle: float) -> None:
        try:
            await self.loader.unload(model)
        except Exception:  # noqa: BLE001 — its next request loads whatever is not running
            log.exception("model %s: unloading it (keep_alive) failed", model)
            return
        finally:
            self._unloading.pop(model, None)
        self.actions[model, "unload"] += 1
        log.info("model %s unloaded: idle for %.0f s (keep_alive); its next request loads it", model, idle)
        if self.audit is not None:
            await self.audit({"event": "model_unload", "decision": "allow", "model": model, "reason": "keep_alive",
                              "idle_s": round(idle, 1)})

    async def wake(self, model: str) -> None:
        """Load a model this module unloaded, once for every request that asks meanwhile; 503 when
        no replica is ready within the startup timeout (it goes on starting, as any model would)."""
        task = self._loading.get(model)
        if task is None:
            task = self._loading[model] = asyncio.create_task(self._load(model), name=f"load {model}")
        if not await asyncio.shield(task):
            raise EngineUnavailableError(f"model {model!r} was unloaded for being idle, and no replica was ready "
                                         "within the startup timeout", retry_after=10,
                                         fix="retry after the Retry-After delay; check `seekstack ps` and the "
                                             "engine's log")

    async def _load(self, model: str) -> bool:
        started = time.monotonic()
        try:
            unloading = self._unloading.get(model)
            if unloading is not None:
                await asyncio.shield(unloading)  # the replicas stop before they start again
            ready = await self.loader.load(model)
        finally:
            self.router.sleeping.pop(model, None)
            self._loading.pop(model, None)
            self.busy_at[model] = time.monotonic()
        waited = time.monotonic() - started
        self.actions[model, "load"] += 1
        log.info("model %s loaded on demand in %.1f s%s", model, waited, "" if ready else " (not ready yet)")
        if self.audit is not None:
            await self.audit({"event": "model_load", "decision": "allow", "model": model, "reason": "request",
                              "ready": ready, "waited_s": round(waited, 1)})
        return ready

    def forget(self, model: str) -> None:
        """An operator unloaded or loaded the model: its requests no longer load it on demand."""
        self.router.sleeping.pop(model, None)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                self.step()
            except Exception:  # noqa: BLE001 — one bad step must not stop the loop
                log.exception("keep_alive: a step failed")

    async def stop(self) -> None:
        pending = [*self._unloading.values(), *self._loading.values()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
