"""OpenAI/DeepSeek-compatible routes. Thin: each hands the request to the inference service.

They are plain Starlette routes (``Request`` in, ``Response`` out), added to the app as they
are: no dependency injection or response model to solve, so FastAPI's per-request route
machinery (~0.1 ms of CPU per request here, measured in bench/README.md) stays off the path
of every token. Errors raised here reach the app's exception handlers like any route's.
"""

from __future__ import annotations

import time

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_CREATED = int(time.time())


async def list_models(request: Request) -> Response:
    principal = request.state.principal
    models = [m for m in request.app.state.settings.models if principal.may_use_model(m.name)]
    return Response(orjson.dumps({"object": "list", "data": [
        {"id": m.name, "object": "model", "created": _CREATED, "owned_by": "seekstack"} for m in models]}),
        media_type="application/json")


async def chat_completions(request: Request) -> Response:
    return await request.app.state.inference.chat(request)


async def completions(request: Request) -> Response:
    return await request.app.state.inference.completions(request)


async def embeddings(request: Request) -> Response:
    return await request.app.state.inference.embeddings(request)


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
]
