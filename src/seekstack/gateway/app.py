"""``build_app()``: the gateway's FastAPI app — services on ``app.state``, thin routers attached."""

from __future__ import annotations

import asyncio
import functools
import logging

from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..config import Settings
from ..console import routes as console_routes
from ..engines.http import EngineHTTP
from ..governance import Governance, roster
from ..registry import Registry
from ..reload import Reloader
from ..planner.admission import memory_problems, room, room_for
from ..store import resolve_model
from ..traffic.autoscaler import Autoscaler, Rule
from ..traffic.keep_alive import KeepAlive
from ..traffic.rollout import Rollouts
from ..traffic.router import Router
from ..supervisor import Supervisor
from ..threads import stop_worker_process
from ..observability import Observability
from . import admin_routes, health_routes, metrics_routes, ollama_routes, openai_routes, traffic_routes
from .guard import GuardMiddleware
from .errors import install_error_handlers
from .inference import InferenceService
from .limits import BodyLimitMiddleware
from .sources import SourceGuard
from .upstream import Upstream


def build_app(settings: Settings, observability: Observability | None = None, reloader: "Reloader | None" = None) -> FastAPI:
    governance = Governance(settings)
    observability = observability or Observability(settings)
    limits = settings.server.source_limits
    sources = SourceGuard(limits.failures_per_minute, limits.audited_failures, limits.requests_per_second)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.governance = governance
        app.state.bootstrap_key = governance.bootstrap() if settings.auth.enabled else None
        flusher = asyncio.create_task(_flush_periodically(governance, sources))
        retention = asyncio.create_task(_retention_daily(governance))
        audit_watch = asyncio.create_task(_recover_audit(governance))
        http = EngineHTTP(read_timeout=settings.scheduler.timeout)
        supervisor = Supervisor(settings, http)
        registry = Registry([supervisor])
        router = Router(registry, settings.scheduler)
        app.state.autoscaler = autoscaler = _autoscaler(settings, registry, router, supervisor, governance)
        plan = await asyncio.to_thread(room, settings)  # the memory budget, before any engine takes its share
        app.state.keep_alive = keep_alive = KeepAlive(registry, router, supervisor, governance.audit.append, room=plan,
                                                      wait_for_room=settings.supervisor.startup_timeout)
        app.state.rollouts = rollouts = Rollouts(settings, supervisor, registry, router, governance.audit.append,
                                                 resolve_model)
        observability.attach(registry, http, governance.audit, router, autoscaler, rollouts, governance.fleet, keep_alive)
        app.state.observability = observability
        app.state.settings = settings
        app.state.supervisor = supervisor
        app.state.registry = registry
        app.state.reloader = reloader or Reloader(None, "serve", settings)  # without a file: refuses, saying why
        app.state.reloader.apply = functools.partial(_apply, supervisor, keep_alive)
        app.state.reloader.sized_checks.append(functools.partial(memory_problems, within=plan))
        app.state.router = router
        app.state.inference = InferenceService(settings, registry, Upstream(router, settings.scheduler.retries, settings.scheduler.timeout,
                                                                               settings.scheduler.resume),
                                               governance.quotas)
        await supervisor.start(unloaded=keep_alive.asleep_at_start(settings.models))
        scaling = asyncio.create_task(autoscaler.run())
        guarding = asyncio.create_task(rollouts.run())
        idling = asyncio.create_task(keep_alive.run())
        try:
            yield
        finally:
            scaling.cancel()
            guarding.cancel()
            idling.cancel()
            await keep_alive.stop()
            await rollouts.stop()
            flusher.cancel()
            retention.cancel()
            audit_watch.cancel()
            await supervisor.stop()
            await http.close()
            await governance.aclose()
            observability.shutdown()
            stop_worker_process()

    # FastAPI's own OpenTelemetry instrumentation stays off: seekstack traces requests itself
    # (observability/tracing.py), and the check costs every request when nothing uses it.
    app = FastAPI(title="seekstack", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    install_error_handlers(app)
    app.include_router(health_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(traffic_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(ollama_routes.router)
    if settings.console.enabled:
        app.include_router(console_routes.router)
    app.add_middleware(openai_routes.OpenAIRoutes)  # innermost: the inference routes, without FastAPI's router
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.server.max_body_bytes, timeout=settings.server.body_timeout)
    app.add_middleware(GuardMiddleware, governance=governance, enabled=settings.auth.enabled,
                       observability=observability, sources=sources)  # outermost: before any body is read
    return app


async def _apply(supervisor: Supervisor, keep_alive: KeepAlive, models: list, changed: set[str], hold=None) -> dict:
    """A reload: models added with a keep_alive that do not fit now are added unloaded."""
    return await supervisor.apply(models, changed, hold, unloaded=keep_alive.after_reload(models))


def _autoscaler(settings: Settings, registry: Registry, router: Router, supervisor: Supervisor,
                governance: Governance) -> Autoscaler:
    """The autoscaler over this host's models that have an ``autoscale`` rule (read at every step:
    a reload may add or change them), acting through the supervisor, audited."""
    def rules() -> dict[str, Rule]:
        return {d.alias: Rule.of(d.model.autoscale) for d in registry.deployments()
                if d.source == "local" and d.model.autoscale is not None}

    def fits(model: str, replicas: int) -> str | None:
        running = {d.alias: len(d.endpoints) for d in registry.deployments() if d.source == "local"}
        return room_for(settings, model, replicas, running)

    return Autoscaler(registry, router, supervisor, rules, fits, governance.audit.append)


async def _flush_periodically(governance: Governance, sources: SourceGuard, every: float = roster.SEEN_EVERY_S) -> None:
    """Write keys' last-used times and usage rows back in batches, off the request path (and the
    gateway's heartbeat in the roster with them)."""
    while True:
        await asyncio.sleep(every)
        try:  # a batch of database writes: off the event loop
            await governance.flush_off_loop()
        except Exception as exc:  # the database is away: the rows wait for the next flush
            logging.getLogger("seekstack.governance").warning("usage flush failed (kept for the next): %s", exc)
        for record in sources.summaries():  # refusals counted, not recorded one by one
            governance.audit.append_nowait(record)


async def _recover_audit(governance: Governance, every: float = 1.0) -> None:
    """While the audit store cannot be written, try it again every second, with or without traffic;
    while it can, fold its WAL into the database every second, in a worker thread."""
    while True:
        await asyncio.sleep(every)
        if governance.audit.unavailable is not None:
            governance.audit.try_recover()
        else:
            await asyncio.to_thread(governance.audit.checkpoint_wal)


async def _retention_daily(governance: Governance, first_after: float = 60.0) -> None:
    """Apply retention a minute after start, then every 24 hours."""
    await asyncio.sleep(first_after)
    while True:
        try:
            await governance.run_retention()
        except Exception:  # a failed purge must not stop the gateway; the next run retries
            logging.getLogger("seekstack.governance").exception("retention run failed")
        await asyncio.sleep(86400)
