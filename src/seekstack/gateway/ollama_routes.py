"""Ollama's API beside the OpenAI one: `/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`,
`/api/show`, `/api/ps`, `/api/version` — for the many tools that speak it.

A translation, not a second engine path: each request becomes the OpenAI request it means
and goes through the same inference service (model allow-list, context checks, token
reservation, PII policy); the guard in front of every route has already authenticated,
authorized, limited and audited it, exactly as for `/v1`. Answers come back in Ollama's
shape: one JSON object, or — Ollama streams by default — newline-delimited JSON objects
ending with one whose ``done`` is true and which carries the token counts. Errors are
Ollama's ``{"error": "…"}``.

Ollama's load-time options (``num_ctx``, ``num_gpu``, ``keep_alive`` …) describe how to load
a model; here the operator's config decides that (a model's ``keep_alive`` too), so they are
accepted and ignored. A request with nothing to answer — ``/api/generate`` with an empty
prompt, ``/api/chat`` with no messages — is Ollama's preload: the model is loaded if it was
unloaded on demand (keep_alive), and the answer's ``done_reason`` is ``load``. The same with
``keep_alive: 0`` is Ollama's unload (``ollama stop``); here unloading is an operator's action,
so it is refused (403) naming ``seekstack models unload``.
``num_predict`` is ``max_tokens`` (-1: no limit but the context and the caller's budgets).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any, AsyncIterator, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from .. import __version__
from ..errors import (InvalidRequestError, ModelNotFoundError, PermissionDeniedError, SeekstackError,
                      UnsupportedError)
from .errors import route_error
from .inference import validation_error
from .sse import EventStream

router = APIRouter(prefix="/api")

# Ollama option → OpenAI parameter (those with the same meaning; the rest are load-time or unknown)
OPTIONS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p", "seed": "seed",
           "stop": "stop", "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
           "frequency_penalty": "frequency_penalty", "typical_p": "typical_p"}
_STARTED = dt.datetime.now(dt.timezone.utc).isoformat()


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class OllamaMessage(_Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None


class OllamaChat(_Body):
    model: str = Field(min_length=1, max_length=256)
    messages: list[OllamaMessage] = Field(default_factory=list)
    keep_alive: int | float | str | None = None
    stream: bool = True
    options: dict[str, Any] | None = None
    format: str | dict[str, Any] | None = None
    think: bool | str | None = None


class OllamaGenerate(_Body):
    model: str = Field(min_length=1, max_length=256)
    prompt: str = ""
    keep_alive: int | float | str | None = None
    system: str | None = None
    raw: bool = False
    stream: bool = True
    options: dict[str, Any] | None = None
    format: str | dict[str, Any] | None = None
    images: list[str] | None = None


class OllamaEmbed(_Body):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str]
    options: dict[str, Any] | None = None


class OllamaShow(_Body):
    model: str = Field(min_length=1, max_length=256)


# ------------------------------------------------------------------ routes
@router.post("/chat")
async def chat(request: Request) -> Response:
    try:
        body = await _parse(request, OllamaChat)
        if not body.messages:
            return await _preload(request, body.model, body.keep_alive,
                                  {"message": {"role": "assistant", "content": ""}})
        if any(m.images for m in body.messages):
            _refuse_images()
        openai = {"model": body.model, "messages": [{"role": m.role, "content": m.content} for m in body.messages],
                  "stream": body.stream, **_sampling(body.options, body.format)}
        return await _answer(request, "/v1/chat/completions", openai, body.model, body.stream, _chat_piece)
    except SeekstackError as exc:
        return _error(request, exc)


@router.post("/generate")
async def generate(request: Request) -> Response:
    try:
        body = await _parse(request, OllamaGenerate)
        if not body.prompt and not body.images:
            return await _preload(request, body.model, body.keep_alive, {"response": ""})
        if body.images:
            _refuse_images()
        sampling = _sampling(body.options, body.format)
        if body.raw:  # the prompt as it is, no chat template
            path, openai = "/v1/completions", {"model": body.model, "prompt": body.prompt, "stream": body.stream, **sampling}
        else:
            messages = ([{"role": "system", "content": body.system}] if body.system else []) + \
                       [{"role": "user", "content": body.prompt}]
            path, openai = "/v1/chat/completions", {"model": body.model, "messages": messages, "stream": body.stream,
                                                   **sampling}
        return await _answer(request, path, openai, body.model, body.stream, _generate_piece)
    except SeekstackError as exc:
        return _error(request, exc)


@router.post("/embed")
async def embed(request: Request) -> Response:
    try:
        body = await _parse(request, OllamaEmbed)
        started = time.monotonic()
        inner = await _call(request, "/v1/embeddings", {"model": body.model, "input": body.input})
        data = orjson.loads(inner.body)
        return _json({"model": body.model, "embeddings": [d["embedding"] for d in data["data"]],
                      "total_duration": _ns(time.monotonic() - started),
                      "prompt_eval_count": (data.get("usage") or {}).get("prompt_tokens", 0)})
    except SeekstackError as exc:
        return _error(request, exc)


@router.get("/tags")
async def tags(request: Request) -> Response:
    return _json({"models": [_model_entry(m) for m in _visible_models(request)]})


@router.post("/show")
async def show(request: Request) -> Response:
    try:
        body = await _parse(request, OllamaShow)
        model = next((m for m in _visible_models(request) if m.name == body.model), None)
        if model is None:
            raise ModelNotFoundError(f"model {body.model!r} not found", param="model")
        capabilities = [{"chat": "completion", "embeddings": "embedding", "rerank": "rerank"}[model.task]]
        if model.reasoning_format() != "none":
            capabilities.append("thinking")
        return _json({"modified_at": _STARTED, "details": _details(model), "license": "", "template": "",
                      "parameters": "", "capabilities": capabilities,
                      "model_info": {"general.architecture": model.reasoning_format(), "context_length": model.context,
                                     "seekstack.engine": model.engine.kind, "seekstack.replicas": model.replicas}})
    except SeekstackError as exc:
        return _error(request, exc)


@router.get("/ps")
async def ps(request: Request) -> Response:
    registry = request.app.state.registry
    running = []
    for model in _visible_models(request):
        replicas = registry.endpoints(model.name)
        if any(r.routable for r in replicas):
            size = sum((r.describe().get("memory_bytes") or 0) for r in replicas)
            left = request.app.state.keep_alive.expires_in(model.name)  # None: loaded until the config changes
            expires = "9999-12-31T23:59:59Z" if left is None else \
                (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=left)).isoformat().replace("+00:00", "Z")
            running.append({**_model_entry(model), "size": size, "size_vram": 0, "context_length": model.context,
                            "expires_at": expires})
    return _json({"models": running})


@router.get("/version")
async def version() -> Response:
    return _json({"version": f"seekstack-{__version__}"})


async def _preload(request: Request, name: str, keep_alive: Any, empty: dict[str, Any]) -> Response:
    """Ollama's empty request: load the model if it is unloaded on demand, and say so."""
    if name not in request.app.state.registry.aliases():
        raise ModelNotFoundError(f"model {name!r} not found", param="model")
    request.state.principal.require_model(name)  # 403, as a request for it would get
    if _zero(keep_alive):
        raise PermissionDeniedError(f"unloading model {name!r} through Ollama's API (keep_alive: 0) is not allowed here",
                                    fix=f"an operator unloads it with `seekstack models unload {name}`; a model's "
                                        "keep_alive in seekstack.yaml unloads it when idle")
    router = request.app.state.router
    await router.wake(name)  # unloaded on demand: loaded now (one load for every request that waits)
    router.peek(name)  # 503 naming why, when it still cannot serve (an operator unloaded it, no replica is up)
    return _json({"model": name, "created_at": _now(), **empty, "done": True, "done_reason": "load"})


def _zero(keep_alive: Any) -> bool:
    """Ollama's ``keep_alive`` meaning "unload now": 0, "0", "0s", "0m"…"""
    if isinstance(keep_alive, (int, float)) and not isinstance(keep_alive, bool):
        return keep_alive == 0
    return isinstance(keep_alive, str) and re.fullmatch(r"\s*0+(\.0*)?(ns|us|µs|ms|s|m|h)?\s*", keep_alive) is not None


# ------------------------------------------------------------------ translation
async def _parse(request: Request, model: type[BaseModel]):
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"request body is not valid JSON ({exc.msg})")
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc, body) from None


def _bad(message: str) -> SeekstackError:
    return InvalidRequestError(message, fix="send a JSON object as Ollama's API describes")


def _refuse_images():
    raise UnsupportedError("images are not supported by the models this server runs", param="images")


def _sampling(options: dict[str, Any] | None, fmt: str | dict | None) -> dict[str, Any]:
    options = options or {}
    out = {OPTIONS[k]: v for k, v in options.items() if k in OPTIONS and v is not None}
    predict = options.get("num_predict")
    if isinstance(predict, int) and not isinstance(predict, bool) and predict > 0:
        out["max_tokens"] = predict
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    return out


async def _call(request: Request, path: str, body: dict[str, Any]) -> Response:
    """Run the OpenAI route ``path`` with ``body`` for this (already admitted) request."""
    payload = orjson.dumps(body)
    delivered = False

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": payload, "more_body": False}
        return await request.receive()  # after the body: the client's disconnect, as for /v1

    inner = Request({**request.scope, "path": path}, receive)
    service = request.app.state.inference
    handler = {"/v1/chat/completions": service.chat, "/v1/completions": service.completions,
               "/v1/embeddings": service.embeddings}[path]
    return await handler(inner)


async def _answer(request: Request, path: str, body: dict[str, Any], model: str, stream: bool, piece) -> Response:
    started = time.monotonic()
    if stream:
        body["stream_options"] = {"include_usage": True}
    inner = await _call(request, path, body)
    if isinstance(inner, EventStream):
        return NDJSONStream(_ndjson(inner.events, model, started, piece))
    data = orjson.loads(inner.body)
    choice = (data.get("choices") or [{}])[0]
    text = choice.get("text") if "text" in choice else (choice.get("message") or {}).get("content") or ""
    thinking = (choice.get("message") or {}).get("reasoning_content")
    return _json({**piece(model, text or "", thinking), **_final(choice.get("finish_reason"), data.get("usage"), started)})


def _chat_piece(model: str, text: str, thinking: str | None) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    if thinking:
        message["thinking"] = thinking
    return {"model": model, "created_at": _now(), "message": message}


def _generate_piece(model: str, text: str, thinking: str | None) -> dict[str, Any]:
    out = {"model": model, "created_at": _now(), "response": text}
    if thinking:
        out["thinking"] = thinking
    return out


def _final(reason: str | None, usage: dict | None, started: float) -> dict[str, Any]:
    usage = usage or {}
    return {"done": True, "done_reason": reason or "stop", "total_duration": _ns(time.monotonic() - started),
            "prompt_eval_count": usage.get("prompt_tokens", 0), "eval_count": usage.get("completion_tokens", 0)}


async def _ndjson(events: AsyncIterator[bytes], model: str, started: float, piece) -> AsyncIterator[bytes]:
    """OpenAI server-sent events → Ollama's newline-delimited JSON, ending with the ``done`` line."""
    reason, usage = None, None
    try:
        async for batch in events:
            lines = []
            for event in batch.split(b"\n\n"):
                if not event.startswith(b"data: ") or event == b"data: [DONE]":
                    continue
                data = orjson.loads(event[6:])
                if "error" in data:
                    lines.append(orjson.dumps({"error": data["error"].get("message", "error")}) + b"\n")
                    continue
                usage = data.get("usage") or usage
                for choice in data.get("choices") or []:
                    reason = choice.get("finish_reason") or reason
                    delta = choice.get("delta") or {}
                    text = choice.get("text") if "text" in choice else delta.get("content")
                    thinking = delta.get("reasoning_content")
                    if text or thinking:
                        lines.append(orjson.dumps({**piece(model, text or "", thinking), "done": False}) + b"\n")
            if lines:
                yield b"".join(lines)
        yield orjson.dumps({**piece(model, "", None), **_final(reason, usage, started)}) + b"\n"
    finally:
        await events.aclose()


class NDJSONStream(EventStream):
    def __init__(self, events: AsyncIterator[bytes]):
        super().__init__(events)
        self.raw_headers = [(b"content-type", b"application/x-ndjson"), (b"cache-control", b"no-cache"),
                            (b"x-accel-buffering", b"no")]


def _visible_models(request: Request):
    principal = request.state.principal
    registry = request.app.state.registry
    return [registry.model(alias) for alias in registry.aliases() if principal.may_use_model(alias)]


def _details(model) -> dict[str, Any]:
    return {"format": "gguf" if model.engine.kind == "llamacpp" else model.engine.kind, "family": model.reasoning_format(),
            "families": None, "parameter_size": "", "quantization_level": model.quantization or ""}


def _model_entry(model) -> dict[str, Any]:
    return {"name": model.name, "model": model.name, "modified_at": _STARTED, "size": 0, "digest": "",
            "details": _details(model)}


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(request: Request, exc: SeekstackError) -> Response:
    """Ollama's error shape: ``{"error": "message"}``, with the status the OpenAI routes would give."""
    route_error(request, exc)  # notes the error code for the guard's metrics
    message = exc.message if not exc.fix else f"{exc.message}. {exc.fix}"
    return Response(orjson.dumps({"error": message}), status_code=exc.status, media_type="application/json",
                    headers=exc.headers())


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)
