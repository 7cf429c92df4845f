"""Liveness, readiness, the registry's tables behind `seekstack ps`, and the OpenAPI document.

Readiness is the gateway's, for a load balancer: ready when it can serve — the audit log
takes records, the governance database answers, and at least one model has a ready
endpoint. Redis (quota counters) being down refuses only the requests a limit applies to:
it is reported here, and the gateway stays ready. One model being down is that
model's state, reported beside it (here, in ``/v1/models`` and in ``seekstack_model_ready``),
and no reason for a balancer to drop a gateway that serves every other model. An audit chain
that diverged from what the shared store vouches for (``audit_writers.divergence``) is reported
too, and the gateway stays ready: every request is still audited, in that chain.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request) -> dict:
    """Alive (the process answers), with each model's state: ready, starting, down or unloaded."""
    registry = getattr(request.app.state, "registry", None)
    models = {alias: state["state"] for alias, state in registry.models().items()} if registry is not None else {}
    return {"status": "ok", "models": models}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    registry = request.app.state.registry
    governance = request.app.state.governance
    models = registry.models()
    # fail-closed, so nothing can be served without these: the audit log, the governance database
    refusing = {"audit": governance.audit.unavailable, "storage": governance.store.unavailable}
    # a model unloaded for being idle (keep_alive) is served too: its next request loads it
    servable = registry.can_serve() or bool(request.app.state.router.sleeping)
    ready = servable and not any(refusing.values())
    body = {"status": "ready" if ready else "not ready",
            "models": {alias: state["state"] for alias, state in models.items()},
            "healthy_replicas": {alias: state["ready_endpoints"] for alias, state in models.items()}}
    body.update((part, f"unavailable: {why}") for part, why in refusing.items() if why)
    if governance.quotas.counters.unavailable:  # only the requests under a limit are refused: still ready
        governance.quotas.counters.recheck()  # in the background: a probe must not wait on a silent server
        body["quotas"] = f"unavailable: {governance.quotas.counters.unavailable}"
    if governance.audit.diverged:  # every request is still audited, in this chain: still ready
        body["audit_chain"] = f"diverged: {governance.audit.diverged}"
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
    """Every endpoint in the registry (``seekstack ps``); ``on_demand``: unloaded, and its model's next
    request loads it (keep_alive)."""
    sleeping = request.app.state.router.sleeping
    return {"object": "list", "data": [{**r.describe(), "on_demand": r.model.name in sleeping}
                                       for r in request.app.state.registry.endpoints()]}


@router.get("/admin/v1/deployments")
async def deployments(request: Request) -> dict:
    """The registry: each model alias's deployments (engine, version, weight, source, state)."""
    return {"object": "list", "data": [d.describe() for d in request.app.state.registry.deployments()]}


@router.post("/admin/v1/models/{name}/unload")
async def unload(name: str, request: Request) -> dict:
    """Stop a configured model's replicas (memory freed); its requests get 503 until it is loaded again."""
    group = await request.app.state.supervisor.unload(name)
    request.app.state.keep_alive.forget(name)  # an operator's unload lasts until an operator's load
    return {"model": name, "state": "unloaded", "replicas": len(group)}


@router.post("/admin/v1/models/{name}/load")
async def load(name: str, request: Request) -> dict:
    """Start an unloaded model's replicas again; answers once one is ready (or the startup timeout).
    When models take turns in memory, idle ones with a keep_alive are unloaded to make room; 409
    when the ones holding it are busy."""
    request.app.state.supervisor.group(name)  # 404 for a model that is not configured
    ready = await request.app.state.keep_alive.load_for_operator(name)
    return {"model": name, "state": "ready" if ready else "starting"}


@router.post("/admin/v1/config/reload")
async def reload_config(request: Request) -> dict:
    """Apply the config file again: models added, changed and removed without dropping a request;
    a config with any problem is refused whole (400, every problem listed) and the running one stays."""
    return await request.app.state.reloader.reload()
