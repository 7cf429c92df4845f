"""The inference service behind the OpenAI routes: validate, check budgets, apply defaults, proxy, shape."""

from __future__ import annotations

import time
from contextlib import aclosing
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ..config import ModelConfig, Settings
from ..engines import Capabilities
from ..engines.backend import Kind
from ..governance import Principal
from ..governance.meter import Meter
from ..governance.quotas import Quotas
from ..governance.pii import Redactor, outbound, policy_for, redact_prompt
from ..observability import Trace, stage
from ..errors import (ContextLengthError, EngineError, EngineUnavailableError, InvalidRequestError,
                      ModelNotFoundError, UnsupportedError, ValidationFailed)
from ..protocol import INSTEAD, ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RerankRequest
from ..registry import Registry
from .assemble import assemble
from .disconnect import cancel_on_disconnect
from .errors import sse_error
from .sse import EventStream
from .shaping import StreamShaper, shape_chat, shape_completion, shape_embeddings, shape_rerank
from ..traffic.fallbacks import PASSES, TRIGGERS, Skipped, reason, tried_text
from ..traffic.router import Ask
from .upstream import Lease, ResumingStream, Upstream

# Prompt-size upper bound without tokenizing: a token covers at least one UTF-8 byte;
# chat templates add a few tokens per message and a fixed preamble.
PER_MESSAGE_SLACK = 16
TEMPLATE_SLACK = 256
# No token of the vocabularies served here is longer than this many UTF-8 bytes (llama.cpp's
# and Hugging Face tokenizers top out near 16-32): a text of N bytes is at least N/64 tokens,
# so a prompt that could never fit is refused without tokenizing it (8 MB took 9 s).
MAX_TOKEN_BYTES = 64
MEDIA_PARTS = frozenset({"image_url", "input_audio"})  # OpenAI's non-text parts of a chat message
Counter = Callable[[], Awaitable["int | None"]]  # counts a prompt on the engine; None when it cannot
Pipeline = Callable[[Request, "dict[str, Any]", Any, str], Awaitable[Response]]  # a request, for one model


async def parse_body(request: Request, model: type[BaseModel]) -> tuple[dict[str, Any], Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON ({exc.msg} at position {exc.pos})",
                                  fix="send a JSON object with Content-Type: application/json") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object", fix="send a JSON object")
    try:
        return body, model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc, body) from None


def validation_error(exc: ValidationError, body: dict[str, Any]) -> ValidationFailed:
    """The most specific problem, named by its path in the body (``messages.0.content.1.text``)."""
    problems = [(_param(error["loc"], body), error) for error in exc.errors()]
    param, error = max(problems, key=lambda pe: len(pe[0]))
    name = ".".join(str(p) for p in param)
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    if error["type"] == "extra_forbidden":
        instead = INSTEAD.get(str(param[-1]))
        return ValidationFailed(f"unknown parameter {name!r}{more}", param=name,
                                fix=f"use {instead}: it is what every token budget counts" if instead else
                                "send only OpenAI's parameters (and the engine sampling parameters seekstack allows)")
    return ValidationFailed(f"{name}: {error['msg']}{more}", param=name)


def _param(loc: tuple, body: Any) -> tuple:
    """The parts of a pydantic error location that exist in the body (union and tag labels dropped)."""
    path, node = [], body
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part.isidentifier() and part not in _TYPE_LABELS:
            path.append(part)  # a missing or unknown field: named, and nothing below it
            break
        else:
            continue
        path.append(part)
    return tuple(path)


_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def longest_input(value: str | list) -> tuple[int, str | None]:
    """A completions prompt or embeddings input — a string, strings, token ids or lists of them —
    as (an upper bound of its longest item in tokens, that item's text to count exactly;
    None when the bound is exact: token ids)."""
    items = value if isinstance(value, list) and value and not isinstance(value[0], int) else [value]
    ids = [item for item in items if isinstance(item, list)]
    texts = [item for item in items if isinstance(item, str)]
    longest_ids = max((len(item) for item in ids), default=0)
    longest = max(texts, key=lambda t: len(t.encode("utf-8")), default="")
    text_bound = len(longest.encode("utf-8")) + PER_MESSAGE_SLACK if texts else 0
    if longest_ids >= text_bound:
        return longest_ids, None
    return text_bound, longest


def _prompts(value: str | list) -> int:
    """How many prompts (or embedding inputs) a request carries: each is answered on its own."""
    return len(value) if isinstance(value, list) and value and not isinstance(value[0], int) else 1


def text_bytes(content: Any) -> int:
    if isinstance(content, str):
        return len(content.encode("utf-8"))
    if isinstance(content, list):
        return sum(text_bytes(part.get("text")) for part in content if isinstance(part, dict))
    return 0


class InferenceService:
    def __init__(self, settings: Settings, registry: Registry, upstream: Upstream, quotas: Quotas):
        self.settings = settings
        self.registry = registry
        self.upstream = upstream
        self.quotas = quotas
        self._indexed: list[ModelConfig] | None = None  # the models list _by_name indexes
        self._by_name: dict[str, ModelConfig] = {}

    # ------------------------------------------------------------ lookup

    def capabilities(self, request: Request, name: str) -> Capabilities:
        """The model's capabilities, if it exists and this caller may use it."""
        principal: Principal = request.state.principal
        caps = self.registry.capabilities(name)
        if caps is None and name in self.registry.aliases():  # configured, with no endpoint now (found by DNS: none)
            principal.require_model(name)
            raise EngineUnavailableError(f"model {name!r} has no engine now", retry_after=2,
                                         fix="retry later; an operator brings its engines back")
        if caps is None:
            available = ", ".join(m for m in sorted(self.registry.aliases()) if principal.may_use_model(m)) or "none"
            raise ModelNotFoundError(f"model {name!r} does not exist; available models: {available}", param="model")
        principal.require_model(name)
        request.state.meter.model = name
        return caps

    # ------------------------------------------------------------ endpoints

    async def chat(self, request: Request) -> Response:
        return await self._serve(request, ChatCompletionRequest, self._chat)

    async def completions(self, request: Request) -> Response:
        return await self._serve(request, CompletionRequest, self._completions)

    async def embeddings(self, request: Request) -> Response:
        return await self._serve(request, EmbeddingRequest, self._embeddings)

    async def rerank(self, request: Request) -> Response:
        return await self._serve(request, RerankRequest, self._rerank)

    async def _serve(self, request: Request, schema: type[BaseModel], pipeline: Pipeline) -> Response:
        """Run ``pipeline`` for the model the request names; where that model cannot take it, for
        its fallbacks in turn (traffic/fallbacks.py)."""
        body, req = await parse_body(request, schema)
        entry = self._entry(req.model)
        if entry is None or not entry.fallbacks:
            return await pipeline(request, body, req, req.model)
        request.state.principal.require_model(req.model)  # a key that may not use it gets no fallback
        deferred = len(request.state.meter.after)
        failed = self.upstream.router.unroutable(req.model) if "unavailable" in entry.fallback_on else None
        if failed is None:  # else known down: straight to the fallbacks, no work done for it
            try:
                return await pipeline(request, body, req, req.model)
            except TRIGGERS as exc:
                if reason(exc) not in entry.fallback_on:
                    raise
                failed, body = exc, None  # the attempt rewrote the body
                await self._rewind(request, deferred)
        return await self._fall_back(request, req, entry, pipeline, failed, body, deferred)

    def _entry(self, name: str) -> ModelConfig | None:
        """The model's config as in force now (a reload replaces the list: indexed again)."""
        models = self.settings.models
        if models is not self._indexed:
            self._by_name, self._indexed = {m.name: m for m in models}, models
        return self._by_name.get(name)

    async def _fall_back(self, request: Request, req: Any, entry: ModelConfig, pipeline: Pipeline, exc: Exception,
                         body: dict[str, Any] | None, deferred: int) -> Response:
        """The first of ``entry``'s fallbacks that answers (the request run afresh for it; ``body``
        as parsed, or None once an attempt rewrote it), or ``exc`` — the model's own error, one of
        its ``fallback_on`` — naming the fallbacks tried."""
        why = reason(exc)
        skipped: list[Skipped] = []
        principal: Principal = request.state.principal
        for name in entry.fallbacks:
            if not principal.may_use_model(name):
                continue  # least privilege: passed over, and not named to this caller
            if body is None:
                body = orjson.loads(await request.body())
            body["model"] = name
            try:
                response = await pipeline(request, body, req, name)
            except PASSES as failed:
                skipped.append(Skipped(name, reason(failed)))
                body = None
                await self._rewind(request, deferred)
                continue
            self.upstream.router.fell_back(req.model, name, why)
            request.state.meter.fallback_from = req.model
            response.raw_headers.append((b"x-seekstack-fallback-from", req.model.encode()))
            return response
        request.state.meter.model = req.model
        request.state.meter.keep_first()
        exc.message += tried_text(skipped)
        raise exc

    async def _rewind(self, request: Request, deferred: int) -> None:
        """Undo what an attempt for one model noted and reserved, before the next model's."""
        request.state.meter.rewind(deferred)
        await self.quotas.unreserve(request.state.admission)

    async def _chat(self, request: Request, body: dict[str, Any], req: ChatCompletionRequest, model: str) -> Response:
        caps = self.capabilities(request, model)
        if not caps.chat:
            raise UnsupportedError(f"model {model!r} does not serve chat completions", param="model")
        for i, message in enumerate(req.messages):
            if message.reasoning_content is not None:
                raise InvalidRequestError(f"messages[{i}].reasoning_content must not be sent back to the model",
                                          fix="drop reasoning_content from earlier assistant turns", param=f"messages.{i}")
            if isinstance(message.content, list) and not caps.media_input:
                media = next((part.type for part in message.content if part.type in MEDIA_PARTS), None)
                if media is not None:
                    raise UnsupportedError(f"model {model!r} takes text only, but messages[{i}] has an {media} part",
                                           fix="send text parts only, or serve a model that accepts images and audio",
                                           param=f"messages.{i}.content")
        self._apply_defaults(body, caps)
        redactor = await self._redactor(request, model, body)
        budget = body.get("max_completion_tokens") or body.get("max_tokens")
        bound = sum(text_bytes(m.get("content")) + PER_MESSAGE_SLACK for m in body["messages"]) + TEMPLATE_SLACK
        count = (lambda: self.upstream.count_tokens(model, "chat", body)) if caps.counts_tokens else None
        prompt = await self._check_context(caps, bound, budget, "messages", count)
        await self._reserve(request, caps, prompt, budget, body, count)
        split = caps.reasoning_format != "none" and not caps.native_reasoning
        if req.stream:
            include = bool(req.stream_options and req.stream_options.include_usage)
            return await self._stream(request, model, "chat", body,
                                      StreamShaper(model, include_usage=include, split_reasoning=split,
                                                  meter=request.state.meter, redactor=redactor))
        data = shape_chat(await self._answer(request, model, caps, "chat", body),
                          model, split)
        for choice in data.get("choices", []):
            message = choice.get("message") or {}
            for name in ("content", "reasoning_content"):
                if isinstance(message.get(name), str):
                    message[name] = await outbound(redactor, message[name])
            if request.state.meter.capture:
                request.state.meter.response_parts.append(message.get("content") or "")
        request.state.meter.add_usage(data["usage"])
        request.state.meter.pii = dict(redactor.found)
        return json_response(data)

    async def _completions(self, request: Request, body: dict[str, Any], req: CompletionRequest,
                           model: str) -> Response:
        caps = self.capabilities(request, model)
        if not caps.completions:
            raise UnsupportedError(f"model {model!r} does not serve completions", param="model")
        self._apply_defaults(body, caps)
        redactor = await self._redactor(request, model, body)
        bound, longest = longest_input(req.prompt)
        count = self._counter(model, caps, bound, longest)
        budget = body.get("max_tokens")
        prompt = await self._check_context(caps, bound, budget, "prompt", count)
        await self._reserve(request, caps, prompt, budget, body, count, prompts=_prompts(req.prompt))
        if req.stream:
            include = bool(req.stream_options and req.stream_options.include_usage)
            return await self._stream(request, model, "completion", body,
                                      StreamShaper(model, include_usage=include, split_reasoning=False,
                                                  meter=request.state.meter, redactor=redactor))
        data = shape_completion(await self._answer(request, model, caps, "completion", body),
                                model)
        for choice in data.get("choices", []):
            if isinstance(choice.get("text"), str):
                choice["text"] = await outbound(redactor, choice["text"])
                if request.state.meter.capture:
                    request.state.meter.response_parts.append(choice["text"])
        request.state.meter.add_usage(data.get("usage"))
        request.state.meter.pii = dict(redactor.found)
        return json_response(data)

    async def _embeddings(self, request: Request, body: dict[str, Any], req: EmbeddingRequest,
                          model: str) -> Response:
        caps = self.capabilities(request, model)
        if not caps.embeddings:
            raise UnsupportedError(f"model {model!r} does not serve embeddings",
                                   fix="set `embeddings: true` for it in seekstack.yaml", param="model")
        bound, longest = longest_input(req.input)  # each input is embedded on its own: the longest must fit
        count = self._counter(model, caps, bound, longest)
        prompt = await self._check_context(caps, bound, None, "input", count)
        await self._reserve(request, caps, prompt, 0, body, count, prompts=_prompts(req.input))
        await self._redactor(request, model, body)
        data = shape_embeddings(await self._post(request, model, "embedding", body), model)
        request.state.meter.add_usage(data.get("usage"))
        return json_response(data)

    async def _rerank(self, request: Request, body: dict[str, Any], req: RerankRequest, model: str) -> Response:
        caps = self.capabilities(request, model)
        if not caps.rerank:
            raise UnsupportedError(f"model {model!r} is not a reranker",
                                   fix="name a model served with `rerank: true` in seekstack.yaml", param="model")
        documents = req.texts()
        # each document is scored with the query in one sequence: the longest pair must fit
        bound, longest = longest_input(req.query + "\n" + max(documents, key=lambda d: len(d.encode("utf-8"))))
        count = self._counter(model, caps, bound, longest)
        prompt = await self._check_context(caps, bound, None, "documents", count)
        await self._reserve(request, caps, prompt, 0, body, count, prompts=len(documents))
        sent = {"model": body["model"], "query": req.query, "documents": list(documents)}  # PII policy rewrites these
        redactor = await self._redactor(request, model, sent)
        data = await self._post(request, model, "rerank", sent)
        shown = sent["documents"] if redactor.policy == "mask" else documents  # text back as an answer's would be
        data = shape_rerank(data, model, shown, req.top_n, req.return_documents, estimate=prompt[0] * len(documents))
        request.state.meter.add_usage(data["usage"])
        return json_response(data)

    # ------------------------------------------------------------ helpers

    async def _redactor(self, request: Request, model: str, body: dict[str, Any]) -> Redactor:
        """Choose the PII policy for this caller and model; apply it to the prompt.

        ``detect`` changes nothing that is sent, so the prompt is counted once the answer is out
        (``meter.after``), not on the way to the first token; ``mask`` / ``tokenize`` rewrite it here."""
        principal: Principal = request.state.principal
        redactor = Redactor(policy_for(self.settings.pii, principal.key_id, principal.team, model))
        meter = request.state.meter
        if redactor.policy == "detect":
            async def count_prompt() -> None:
                with stage(request.state.trace, "pii"):
                    await redact_prompt(body, redactor)
                meter.pii = dict(redactor.found)
            meter.after.append(count_prompt)
        else:
            with stage(request.state.trace, "pii"):
                await redact_prompt(body, redactor)
            meter.pii = dict(redactor.found)
        if meter.capture:
            meter.request_body = {k: v for k, v in body.items() if k in ("messages", "prompt", "input", "query",
                                                                         "documents", "model")}
        return redactor

    def _apply_defaults(self, body: dict[str, Any], caps: Capabilities) -> None:
        for key, value in caps.sampling_defaults.items():
            if body.get(key) is None:
                body[key] = value

    def _counter(self, model: str, caps: Capabilities, bound: int, text: str | None) -> Counter | None:
        """How to count the longest input exactly: token ids are their own count (``text`` None);
        text is counted on the model's engine, where it can count (else None)."""
        if text is None:
            async def exact() -> int:
                return bound
            return exact
        if not caps.counts_tokens:
            return None
        return lambda: self.upstream.count_tokens(model, "completion", {"prompt": text})

    async def _check_context(self, caps: Capabilities, bound: int, budget: int | None, param: str,
                             count: Counter | None) -> tuple[int, bool]:
        """Refuse what cannot fit the context; return the prompt's size in tokens as far as it is
        known, and whether that is final: (an upper bound that counting could lower, False), or
        (a count nothing here can improve — exact, or no way to count — True).

        Where the engine cannot count, only a prompt that cannot fit whatever its tokens is refused
        here; the engine refuses the rest itself, which its Backend turns into the same 400."""
        ctx = caps.context_length
        if budget is not None and budget >= ctx:
            raise ContextLengthError(f"max_tokens is {budget} but the model's context length is {ctx} tokens "
                                     "(prompt and completion together)", fix=f"ask for fewer than {ctx} tokens",
                                     param="max_tokens")
        if bound + (budget or 0) <= ctx:
            return bound, count is None  # fits even in the worst case: no need to count
        if bound // MAX_TOKEN_BYTES >= ctx:
            raise ContextLengthError(f"the prompt is {bound} bytes, at least {bound // MAX_TOKEN_BYTES} tokens, but the "
                                     f"model's context length is {ctx} tokens",
                                     fix="shorten the prompt or serve the model with a larger `context`", param=param)
        n_prompt = None if count is None else await count()
        if n_prompt is None:
            return bound, True
        if n_prompt >= ctx:
            raise ContextLengthError(f"the prompt is {n_prompt} tokens but the model's context length is {ctx} tokens",
                                     fix="shorten the prompt or serve the model with a larger `context`", param=param)
        if budget is not None and n_prompt + budget > ctx:
            raise ContextLengthError(f"the prompt ({n_prompt} tokens) plus max_tokens ({budget}) is "
                                     f"{n_prompt + budget} tokens, more than the model's context length of {ctx}",
                                     fix=f"set max_tokens to at most {ctx - n_prompt}", param="max_tokens")
        return n_prompt, True

    async def _reserve(self, request: Request, caps: Capabilities, prompt: tuple[int, bool], budget: int | None,
                       body: dict[str, Any], count: Counter | None, prompts: int = 1) -> None:
        """Reserve the request's most against the caller's token limits (none: nothing to do).

        ``prompt`` is the (longest) prompt's size, ``prompts`` how many prompts are answered,
        each with up to ``budget`` tokens. The prompt counts exactly where the engine can count
        it (else by its upper bound, settled to the engine's usage afterwards); without
        ``max_tokens`` the completion is bounded by what the budget has left, and the engine is told so."""
        admission = request.state.admission
        if not admission.token_checks:
            return
        n_prompt, exact = prompt
        if not exact and count is not None:
            n_prompt = await count() or n_prompt
        room = max(caps.context_length - n_prompt, 0)
        allowed = await self.quotas.reserve(admission, n_prompt * prompts, None if budget is None else budget * prompts,
                                            room * prompts)
        if budget is None:
            body["max_tokens"] = max(allowed // prompts, 1)

    async def _answer(self, request: Request, model: str, caps: Capabilities, kind: Kind,
                      body: dict[str, Any]) -> dict[str, Any]:
        """The engine's whole answer to a non-streamed request, in its non-streamed form.

        From an engine that notices a departed client only on streams, it is streamed and
        assembled (gateway/assemble.py), so that a client that leaves stops the work."""
        if not caps.cancels_only_streams:
            return await self._post(request, model, kind, body)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        broken: frozenset = frozenset()
        ask = self._ask(request, body)
        with stage(request.state.trace, "engine"):
            async with cancel_on_disconnect(request.receive):
                for _ in range(self.upstream.retries + 1):
                    lease = await self.upstream.send(model, kind, body, stream=True, avoid=broken, ask=ask)
                    request.state.meter.replica = str(lease.replica.index)
                    try:
                        answer = await assemble(lease, kind)
                        self.upstream.router.outcome(lease.replica, ok=True)
                        return answer
                    except ConnectionError as exc:  # nothing reached the client yet: ask another endpoint
                        lease.replica.fail(f"the answer broke off ({exc})")
                        self.upstream.router.outcome(lease.replica, ok=False)
                        broken |= {lease.replica}
                    finally:
                        await lease.aclose()
        raise EngineError("the engine connection broke while answering")

    async def _post(self, request: Request, model: str, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        """Send and wait for the whole answer; a client that leaves meanwhile cancels the request."""
        with stage(request.state.trace, "engine"):
            async with cancel_on_disconnect(request.receive):
                lease = await self.upstream.send(model, kind, body, ask=self._ask(request, body))
        request.state.meter.replica = str(lease.replica.index)
        await lease.aclose()
        try:
            data = orjson.loads(lease.content)
        except orjson.JSONDecodeError:
            raise EngineError("the engine sent a response that is not JSON") from None
        if kind == "rerank" and isinstance(data, list):  # SGLang answers rerank with the bare list of results
            data = {"results": data}
        if not isinstance(data, dict):
            raise EngineError("the engine sent a response that is not a JSON object")
        return lease.replica.backend.normalize(data)

    async def _stream(self, request: Request, model: str, kind: Kind, body: dict[str, Any],
                      shaper: StreamShaper) -> Response:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        trace, sent = request.state.trace, time.monotonic()
        ask = self._ask(request, body)
        with stage(trace, "route"):
            lease = await self.upstream.send(model, kind, body, stream=True, ask=ask)
        shaper.speak(lease.replica.backend)
        meter = request.state.meter
        meter.replica = str(lease.replica.index)
        return EventStream(relay(self.upstream.stream(model, kind, body, lease, ask, sent), shaper, meter, trace, sent))

    def _ask(self, request: Request, body: dict[str, Any]) -> Ask:
        principal: Principal = request.state.principal
        return self.upstream.router.ask(body, principal.key_id, principal.team, request.headers.get("x-session-id"))


async def relay(lease: "Lease | ResumingStream", shaper: StreamShaper, meter: Meter, trace: Trace | None = None,
                sent: float = 0.0) -> AsyncIterator[bytes]:
    """Forward SSE events as they arrive; closing early (client gone) closes the engine connection.

    Notes the first and last token times in ``meter`` (TTFT/TPOT metrics, the stream span)."""
    try:
        async with aclosing(lease.events()) as batches:
            async for events in batches:
                outs = []  # events that arrived together leave together: one write to the client
                for event in events:
                    out = shaper.event(event)
                    if out is not None:
                        outs.append(out)
                if outs:
                    now = meter.last_token_at = time.monotonic()
                    if not meter.first_token_at:
                        meter.first_token_at = now
                        if trace is not None:
                            trace.add("engine_ttft", sent, now, replica=meter.replica)
                    yield outs[0] if len(outs) == 1 else b"".join(outs)
        if not shaper.finished:
            yield sse_error(EngineError("the engine ended the stream early"))
    except ConnectionError:
        yield sse_error(EngineError("the engine connection broke mid-stream"))
    finally:
        with anyio.CancelScope(shield=True):
            await lease.aclose()


def json_response(data: dict[str, Any]) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")
