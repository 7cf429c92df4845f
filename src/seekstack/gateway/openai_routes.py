"""OpenAI/DeepSeek-compatible routes. Thin: each hands the request to the inference service.

They are served by :class:`OpenAIRoutes`, the innermost middleware, straight from a
``(method, path)`` table: the path of every token skips FastAPI's router, exception
middleware and exit stack — ~0.1 ms of CPU per request here once a token has left the
caches cold (bench/README.md). A route's errors become responses exactly as in every other
route (:func:`~seekstack.gateway.errors.route_error`); anything unexpected is a 500 that
closes the connection (:func:`~seekstack.gateway.errors.internal_error`), as the app's own
500 handler does. Every other request goes on to FastAPI.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from ..errors import SeekstackError
from .disconnect import ClientGone
from .errors import internal_error, route_error
from .limits import BodyRefused
from .inference import json_response

_CREATED = int(time.time())


async def list_models(request: Request) -> Response:
    """The models this caller may use, each with its state now (``ready``, ``starting``, ``down``,
    ``unloaded``) — an extra field the OpenAI clients ignore."""
    principal = request.state.principal
    registry = request.app.state.registry
    return json_response({"object": "list", "data": [
        {"id": alias, "object": "model", "created": _CREATED, "owned_by": "seekstack", "state": registry.state(alias)}
        for alias in registry.aliases() if principal.may_use_model(alias)]})


async def chat_completions(request: Request) -> Response:
    return await request.app.state.inference.chat(request)


async def completions(request: Request) -> Response:
    return await request.app.state.inference.completions(request)


async def embeddings(request: Request) -> Response:
    return await request.app.state.inference.embeddings(request)


async def rerank(request: Request) -> Response:
    return await request.app.state.inference.rerank(request)


ENDPOINTS: dict[tuple[str, str], Callable[[Request], Awaitable[Response]]] = {
    ("GET", "/v1/models"): list_models,
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/completions"): completions,
    ("POST", "/v1/embeddings"): embeddings,
    ("POST", "/v1/rerank"): rerank,
}


class OpenAIRoutes:
    """Serve the endpoints above; pass every other request on."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        endpoint = ENDPOINTS.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if endpoint is None:
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except (SeekstackError, ClientGone) as exc:
            response = route_error(request, exc)
        except BodyRefused:  # the body limit's own answer (413, 408)
            raise
        except Exception:  # a bug: 500, logged, and the connection closed
            request.state.error_code = "internal_error"
            response = internal_error(scope["method"], scope["path"])
        await response(scope, receive, send)
