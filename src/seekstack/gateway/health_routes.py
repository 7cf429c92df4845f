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
    ready = all(models.values()) and audit is None
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
