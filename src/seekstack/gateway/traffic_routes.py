"""Admin API for replica counts, the autoscaler and rollouts. Thin: the supervisor, the
autoscaler and the rollouts decide.

- ``GET /admin/v1/autoscaler`` (``scale:read``): each autoscaled model's rule, replicas,
  utilisation and last decision.
- ``PUT /admin/v1/autoscaler/{model}`` (``scale:manage``): new replica bounds, until a restart.
- ``POST /admin/v1/models/{model}/scale`` (``scale:manage``): run N replicas now (within the
  autoscale bounds, when the model has a rule).
- ``GET /admin/v1/rollouts`` (``rollout:read``): rollouts in progress, then the last ended ones.
- ``POST /admin/v1/rollouts`` (``rollout:manage``): a canary or a blue-green switch to a version.
- ``POST /admin/v1/rollouts/{model}/promote|abort`` (``rollout:manage``).
"""

from __future__ import annotations

from typing import Literal, Optional

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidRequestError
from ..traffic.rollout import Guards

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


def refuse_on_a_worker(request: Request, what: str, fix: str) -> None:
    """Under `serve --workers` the leader runs the engines; a worker cannot start or stop them."""
    if request.app.state.reloader.leader is not None:
        raise InvalidRequestError(f"{what} is not available under `serve --workers`: the leader process runs "
                                  "the engines, not the gateway workers", fix=fix)


@router.post("/models/{name}/scale")
async def scale(name: str, body: Scale, request: Request) -> dict:
    supervisor = request.app.state.supervisor
    group = supervisor.group(name)  # 404 naming the configured models
    refuse_on_a_worker(request, "scaling by hand", "set the model's `replicas` in the config file, then "
                       "`seekstack config reload`: every worker follows")
    if not group[0].model.engine.launched:
        raise InvalidRequestError(f"model {name!r} runs on engines seekstack does not start; it cannot be scaled here",
                                  fix="scale those engines where they run")
    rule = request.app.state.autoscaler.rule(name)
    if rule is not None and not rule.min_replicas <= body.replicas <= rule.max_replicas:
        raise InvalidRequestError(f"model {name!r} is autoscaled between {rule.min_replicas} and {rule.max_replicas} replicas",
                                  fix=f"ask for {rule.min_replicas}..{rule.max_replicas}, or change the bounds "
                                      f"(PUT /admin/v1/autoscaler/{name})", param="replicas")
    if body.replicas > len(group):  # no more than the memory plan says fit, as at start and for the autoscaler
        autoscaler = request.app.state.autoscaler
        refused = await anyio.to_thread.run_sync(autoscaler.fits, name, body.replicas)
        if refused is not None:
            raise InvalidRequestError(f"model {name!r}: {refused}", param="replicas",
                                      fix="ask for fewer replicas, or raise supervisor.memory_budget_gb if the machine has the room")
    await supervisor.scale(name, body.replicas)
    return {"model": name, "replicas": body.replicas}


class NewRollout(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    to: str = Field(description="the store version: VERSION or NAME@VERSION")
    mode: Literal["canary", "blue-green"] = "canary"
    canary_percent: float = Field(1.0, gt=0, lt=100, description="canary: the share of the model's traffic")
    duration_s: float = Field(1800.0, gt=0, le=30 * 86400, description="canary: promoted after this long unbroken")
    max_error_rate: float = Field(0.01, ge=0, le=1, description="canary: error rate allowed above the baseline's")
    max_ttft_ratio: float = Field(1.5, ge=1, description="canary: p99 time to first token allowed, × the baseline's")
    min_requests: int = Field(20, ge=1, description="canary: requests before it is judged")


@router.get("/rollouts")
async def rollouts(request: Request) -> dict:
    return {"object": "list", "data": request.app.state.rollouts.describe()}


@router.post("/rollouts", status_code=201)
async def start_rollout(body: NewRollout, request: Request) -> dict:
    refuse_on_a_worker(request, "a canary or blue-green rollout",
                       "point the model at the new version in the config file and `seekstack config reload` (its "
                       "replicas are replaced without dropping a request), or serve without --workers for rollouts")
    guards = Guards(body.max_error_rate, body.max_ttft_ratio, body.min_requests)
    rollout = await request.app.state.rollouts.start(body.model, body.to, body.mode, body.canary_percent,
                                                     body.duration_s, guards)
    return rollout.describe()


@router.post("/rollouts/{name}/promote")
async def promote_rollout(name: str, request: Request) -> dict:
    return (await request.app.state.rollouts.promote(name)).describe()


@router.post("/rollouts/{name}/abort")
async def abort_rollout(name: str, request: Request) -> dict:
    return (await request.app.state.rollouts.abort(name)).describe()
