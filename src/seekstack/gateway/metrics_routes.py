"""``GET /metrics``: Prometheus exposition text (permission ``metrics:read``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from ..errors import NotFoundError

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    observability = request.app.state.observability
    if observability.metrics is None:
        raise NotFoundError("metrics are turned off on this server", fix="set observability.metrics: true")
    return Response(await observability.render(), media_type=CONTENT_TYPE_LATEST)
