"""Liveness, readiness, the replica table behind `seekstack ps`, and the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    supervisor = request.app.state.supervisor
    models = {name: sum(r.routable for r in group) for name, group in supervisor.replicas.items()}
    audit = request.app.state.governance.audit.unavailable  # fail-closed: nothing can be served
    ready = supervisor.ready() and audit is None  # an unloaded model is no reason to stop sending traffic
    body = {"status": "ready" if ready else "not ready", "healthy_replicas": models}
    if audit is not None:
        body["audit"] = f"unavailable: {audit}"
    return JSONResponse(body, status_code=200 if ready else 503, headers=None if ready else {"Retry-After": "2"})


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> JSONResponse:
    """The OpenAPI document of /v1 and /admin/v1 (any valid key may read it)."""
    state = request.app.state
    if getattr(state, "openapi", None) is None:
        from .openapi import openapi_document

        state.openapi = openapi_document(request.app)
    return JSONResponse(state.openapi)


@router.get("/admin/v1/replicas")
async def replicas(request: Request) -> dict:
    return {"object": "list", "data": [r.describe() for r in request.app.state.supervisor.all()]}


@router.post("/admin/v1/models/{name}/unload")
async def unload(name: str, request: Request) -> dict:
    """Stop a configured model's replicas (memory freed); its requests get 503 until it is loaded again."""
    group = await request.app.state.supervisor.unload(name)
    return {"model": name, "state": "unloaded", "replicas": len(group)}


@router.post("/admin/v1/models/{name}/load")
async def load(name: str, request: Request) -> dict:
    """Start an unloaded model's replicas again; answers once one is ready (or the startup timeout)."""
    ready = await request.app.state.supervisor.load(name)
    return {"model": name, "state": "ready" if ready else "starting"}
