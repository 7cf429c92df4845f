"""Admin API for replica counts and the autoscaler. Thin: the supervisor and the autoscaler decide.

- ``GET /admin/v1/autoscaler`` (``scale:read``): each autoscaled model's rule, replicas,
  utilisation and last decision.
- ``PUT /admin/v1/autoscaler/{model}`` (``scale:manage``): new replica bounds, until a restart.
- ``POST /admin/v1/models/{model}/scale`` (``scale:manage``): run N replicas now (within the
  autoscale bounds, when the model has a rule).
"""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidRequestError

router = APIRouter(prefix="/admin/v1")


class Bounds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_replicas: Optional[int] = Field(None, ge=1, le=64)
    max_replicas: Optional[int] = Field(None, ge=1, le=64)


class Scale(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replicas: int = Field(ge=1, le=64)


@router.get("/autoscaler")
async def autoscaler(request: Request) -> dict:
    return {"object": "list", "data": request.app.state.autoscaler.describe()}


@router.put("/autoscaler/{name}")
async def set_bounds(name: str, bounds: Bounds, request: Request) -> dict:
    rule = request.app.state.autoscaler.set_bounds(name, bounds.min_replicas, bounds.max_replicas)
    return {"model": name, "rule": rule.to_json()}


@router.post("/models/{name}/scale")
async def scale(name: str, body: Scale, request: Request) -> dict:
    supervisor = request.app.state.supervisor
    group = supervisor._group(name)  # 404 naming the configured models
    if not group[0].model.engine.launched:
        raise InvalidRequestError(f"model {name!r} runs on engines seekstack does not start; it cannot be scaled here",
                                  fix="scale those engines where they run")
    rule = request.app.state.autoscaler.rule(name)
    if rule is not None and not rule.min_replicas <= body.replicas <= rule.max_replicas:
        raise InvalidRequestError(f"model {name!r} is autoscaled between {rule.min_replicas} and {rule.max_replicas} replicas",
                                  fix=f"ask for {rule.min_replicas}..{rule.max_replicas}, or change the bounds "
                                      f"(PUT /admin/v1/autoscaler/{name})", param="replicas")
    await supervisor.scale(name, body.replicas)
    return {"model": name, "replicas": body.replicas}
