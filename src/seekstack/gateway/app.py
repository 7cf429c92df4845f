"""``build_app()``: the gateway's FastAPI app — services on ``app.state``, thin routers attached."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..config import Settings
from ..engines.http import EngineHTTP
from ..router import Router
from ..supervisor import Supervisor
from . import health_routes, openai_routes
from .errors import install_error_handlers
from .inference import InferenceService
from .limits import BodyLimitMiddleware
from .upstream import Upstream


def build_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        http = EngineHTTP(read_timeout=settings.scheduler.timeout)
        supervisor = Supervisor(settings, http)
        router = Router(supervisor, settings.scheduler.policy)
        app.state.settings = settings
        app.state.supervisor = supervisor
        app.state.router = router
        app.state.inference = InferenceService(settings, supervisor, Upstream(router, http, settings.scheduler.retries, settings.scheduler.timeout))
        await supervisor.start()
        try:
            yield
        finally:
            await supervisor.stop()
            await http.close()

    app = FastAPI(title="seekstack", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.include_router(openai_routes.router)
    app.include_router(health_routes.router)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.server.max_body_bytes)
    return app
