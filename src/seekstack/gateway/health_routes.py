"""Liveness, readiness and the replica table behind `seekstack ps`."""

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


@router.get("/admin/v1/replicas")
async def replicas(request: Request) -> dict:
    return {"object": "list", "data": [r.describe() for r in request.app.state.supervisor.all()]}
