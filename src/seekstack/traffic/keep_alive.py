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

Models that take turns: when the models with a ``keep_alive`` do not all fit the memory plan at
once (planner/admission.py), only those that fit are loaded at start, and a load on demand
first makes room (:meth:`KeepAlive.make_room`): it unloads the least recently used *idle*
models with a ``keep_alive`` until the one asked for fits — Ollama's scheduler, on the planner's
figures instead of a model count. A model with a request in flight or waiting is never
unloaded for another: the load waits (up to the startup timeout) until enough of them are
idle, and is refused with 503 then. Models without a ``keep_alive`` are never unloaded for
room; when unloading every other model could not make room (``serve --force``), the load goes
ahead as it always did.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from ..errors import ConflictError, EngineUnavailableError

from .turns import Holder, choose, hopeless

if TYPE_CHECKING:
    from ..planner.admission import Room
    from ..registry import Deployment, Registry
    from .router import Router

log = logging.getLogger("seekstack.keep_alive")


class Loader(Protocol):
    """What unloads and loads a model's replicas: the supervisor."""

    async def unload(self, model: str) -> Any: ...

    async def load(self, model: str, timeout: float | None = None) -> bool: ...


class KeepAlive:
    def __init__(self, registry: "Registry", router: "Router", loader: Loader,
                 audit: Callable[[dict[str, Any]], Awaitable[None]] | None = None, every: float = 1.0,
                 room: "Room | None" = None, wait_for_room: float = 120.0):
        self.registry = registry
        self.router = router
        self.loader = loader
        self.audit = audit
        self.every = every
        self.room = room                  # the memory plan; None: models never take turns
        self.wait_for_room = wait_for_room  # seconds a load on demand waits for busy models to go idle
        self.busy_at: dict[str, float] = {}                     # model → last seen with requests (monotonic)
        self.actions: collections.Counter[tuple[str, str]] = collections.Counter()  # (model, unload|load|evict): metrics
        self._unloading: dict[str, asyncio.Task[None]] = {}
        self._loading: dict[str, asyncio.Task[bool]] = {}
        self._admitted: set[str] = set()  # given room: counted as loaded until the loader has started them

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
                self._sleep(model, idle)
                unloaded.append((model, idle))
        return unloaded

    def _sleep(self, model: str, idle: float, for_model: str | None = None) -> None:
        """Route the model's next requests to :meth:`wake`, then unload it (``for_model``: to make room)."""
        self.router.sleeping[model] = functools.partial(self.wake, model)
        self._unloading[model] = asyncio.create_task(self._unload(model, idle, for_model), name=f"unload {model}")

    async def _unload(self, model: str, idle: float, for_model: str | None = None) -> None:
        try:
            await self.loader.unload(model)
        except Exception:  # noqa: BLE001 — its next request loads whatever is not running
            log.exception("model %s: unloading it (keep_alive) failed", model)
            return
        finally:
            self._unloading.pop(model, None)
        record = {"event": "model_unload", "decision": "allow", "model": model, "idle_s": round(idle, 1)}
        if for_model is None:
            self.actions[model, "unload"] += 1
            log.info("model %s unloaded: idle for %.0f s (keep_alive); its next request loads it", model, idle)
            record["reason"] = "keep_alive"
        else:
            self.actions[model, "evict"] += 1
            log.info("model %s unloaded to make room for %s: idle for %.0f s, the least recently used; its next "
                     "request loads it", model, for_model, idle)
            record.update(reason="room", for_model=for_model)
        if self.audit is not None:
            await self.audit(record)

    # ------------------------------------------------------------ taking turns in memory

    def _resident(self) -> dict[str, "Deployment"]:
        """The local deployments holding memory now (or given it to start), by name."""
        return {d.name: d for d in self.registry.deployments() if d.source == "local" and
                (d.alias in self._admitted or any(e.state != "unloaded" for e in d.endpoints))}

    def make_room(self, model: str, now: float) -> float | None:
        """Give ``model`` room to load, unloading idle models with a keep_alive (least recently used
        first) when it does not fit; it counts as loaded from here on. None when done (or when
        nothing could make room: it loads as it always did); else the bytes still missing, while
        models that could give room are busy or still unloading. Nothing awaits: one decision."""
        if self.room is None or model in self._admitted:
            return None
        resident = self._resident()
        mine = [d for d in self.registry.deployments() if d.alias == model and d.source == "local"]
        if not mine or any(d.name in resident for d in mine):
            return None  # not ours to plan, or loaded already
        need = sum(self.room.bytes_of(d.model) for d in mine)
        short = sum(self.room.bytes_of(d.model) for d in resident.values()) + need - self.room.budget_bytes
        turns = self.timeouts()  # only models with a keep_alive give room
        holders = [Holder(d.alias, self.room.bytes_of(d.model),
                          None if d.alias in self.router.sleeping or d.alias in self._admitted or d.alias in self._loading
                          else self.idle_for(d, now))
                   for d in resident.values() if d.alias in turns and d.alias != model]
        if hopeless(holders, short):  # serve --force: load it anyway, as it always did
            log.warning("model %s: %.2f GiB short of the memory plan even with every other model with a keep_alive "
                        "unloaded; loading it anyway", model, short / 2**30)
            chosen: list[Holder] | None = []
        else:
            chosen = choose(holders, short)
        if chosen is None:
            return short  # wait for busy ones to go idle (or for unloads under way)
        for holder in chosen:
            self._sleep(holder.model, holder.idle_s, for_model=model)
        if chosen:
            return short  # once they are unloaded, it fits
        self._admitted.add(model)
        return None

    def planned(self) -> dict[str, float]:
        """Each model holding memory now and its planned bytes (0 for engines the plan does not size);
        with a :attr:`room` only."""
        held: dict[str, float] = {}
        for d in self._resident().values():
            held[d.alias] = held.get(d.alias, 0.0) + self.room.bytes_of(d.model)
        return held

    def holding(self, model: str) -> list[str]:
        """The other models with a keep_alive that hold memory now: what a load waits on."""
        turns = self.timeouts()
        return sorted(d.alias for d in self._resident().values() if d.alias in turns and d.alias != model)

    async def _room_for(self, model: str, wait: float, operator: bool = False) -> None:
        """Wait until ``model`` has room (:meth:`make_room`), at most ``wait`` seconds; then refuse
        (503 with Retry-After to a request, 409 to an operator)."""
        deadline = time.monotonic() + wait
        while True:
            short = self.make_room(model, time.monotonic())
            if short is None:
                return
            unloading = list(self._unloading.values())
            if unloading:
                await asyncio.wait([asyncio.shield(t) for t in unloading])
                continue
            if time.monotonic() >= deadline:
                why = (f"model {model!r} does not fit the memory plan beside the models loaded now ({short / 2**30:.2f} "
                       f"GiB short) while the models holding it stay busy: {', '.join(self.holding(model)) or 'none'}")
                if operator:
                    raise ConflictError(why, fix="unload one (`seekstack models unload NAME`) or retry once it is idle")
                raise EngineUnavailableError(why + " in time", retry_after=10,
                                             fix="retry after the Retry-After delay; or raise supervisor.memory_budget_gb, "
                                                 "or serve fewer models on this host")
            await asyncio.sleep(0.2)

    async def load_for_operator(self, model: str) -> bool:
        """An operator's ``models load``: make room as a request would (idle models only, no waiting:
        409 naming the busy ones, and nothing changed), then load; from then on an operator's unload lasts."""
        await self._room_for(model, 0.0, operator=True)
        self.forget(model)
        try:
            return await self.loader.load(model)
        finally:
            self._admitted.discard(model)

    async def wake(self, model: str) -> None:
        """Load a model this module unloaded, once for every request that asks meanwhile; 503 when
        no replica is ready within the startup timeout (it goes on starting, as any model would)."""
        task = self._loading.get(model)
        if task is None:
            task = self._loading[model] = asyncio.create_task(self._load(model), name=f"load {model}")
        if not await asyncio.shield(task):
            raise EngineUnavailableError(f"model {model!r} loads on demand (keep_alive), and no replica was ready "
                                         "within the startup timeout", retry_after=10,
                                         fix="retry after the Retry-After delay; check `seekstack ps` and the "
                                             "engine's log")

    async def _load(self, model: str) -> bool:
        started = time.monotonic()
        try:
            unloading = self._unloading.get(model)
            if unloading is not None:
                await asyncio.shield(unloading)  # the replicas stop before they start again
            await self._room_for(model, self.wait_for_room)  # refused: it stays asleep, the next request tries again
            try:
                ready = await self.loader.load(model)
            finally:
                self.router.sleeping.pop(model, None)
                self._admitted.discard(model)
                self.busy_at[model] = time.monotonic()
        finally:
            self._loading.pop(model, None)
        waited = time.monotonic() - started
        self.actions[model, "load"] += 1
        log.info("model %s loaded on demand in %.1f s%s", model, waited, "" if ready else " (not ready yet)")
        if self.audit is not None:
            await self.audit({"event": "model_load", "decision": "allow", "model": model, "reason": "request",
                              "ready": ready, "waited_s": round(waited, 1)})
        return ready

    def asleep_at_start(self, models: list[Any]) -> list[str]:
        """The models with a keep_alive to leave unloaded at start, when they do not all fit: those
        after the first that fit beside the models without one, in config order. Each is routed to
        :meth:`wake`, so that its first request loads it."""
        if self.room is None:
            return []
        always = [m for m in models if m.keep_alive is None]  # counted first: they never give room
        return self._fit_or_sleep(always + [m for m in models if m.keep_alive is not None], 0.0,
                                  "left unloaded at start")

    def after_reload(self, models: list[Any]) -> list[str]:
        """A reload's models: forget those removed. The ones to have unloaded: those unloaded on
        demand now (changed or not: a change does not load them), and of those added with a
        keep_alive, the ones that do not fit beside what holds memory now (their first request
        makes room, as at start)."""
        names = {m.name for m in models}
        for gone in [name for name in self.router.sleeping if name not in names]:
            self.router.sleeping.pop(gone)
        known = {d.alias for d in self.registry.deployments()}
        asleep = [m.name for m in models if m.name in known and m.name in self.router.sleeping]
        if self.room is None:
            return asleep
        used = sum(self.room.bytes_of(d.model) for d in self._resident().values() if d.alias in names)
        return asleep + self._fit_or_sleep([m for m in models if m.name not in known], used, "added unloaded")

    def _fit_or_sleep(self, models: list[Any], used: float, what: str) -> list[str]:
        """In order, each of ``models`` this host starts counts its room while it fits beside
        ``used`` bytes (a model without a keep_alive always does); the others with a keep_alive are
        left unloaded, routed to :meth:`wake`. Their names."""
        asleep = []
        for m in models:
            if not m.engine.launched:
                continue
            if m.keep_alive is None or used + self.room.bytes_of(m) <= self.room.budget_bytes:
                used += self.room.bytes_of(m)
                continue
            asleep.append(m.name)
            self.router.sleeping[m.name] = functools.partial(self.wake, m.name)
            log.info("model %s %s: it does not fit the memory plan beside the models loaded now (%s); its first "
                     "request makes room and loads it", m.name, what, self.room.where)
        return asleep

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
