"""OpenAI/DeepSeek-compatible routes. Thin: each hands the request to the inference service."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

router = APIRouter()
_CREATED = int(time.time())


@router.get("/v1/models")
async def list_models(request: Request) -> dict:
    principal = request.state.principal
    models = [m for m in request.app.state.settings.models if principal.may_use_model(m.name)]
    return {"object": "list", "data": [
        {"id": m.name, "object": "model", "created": _CREATED, "owned_by": "seekstack"} for m in models]}


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await request.app.state.inference.chat(request)


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await request.app.state.inference.completions(request)


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    return await request.app.state.inference.embeddings(request)
