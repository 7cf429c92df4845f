"""Shape engine responses into exact OpenAI/DeepSeek form.

The gateway owns model ids, schema fidelity (``logprobs``/``refusal`` as null), DeepSeek's
``reasoning_content`` and usage fields (``prompt_cache_hit_tokens``/``…_miss_tokens``).
Streams are rewritten event by event, as they come, never buffered.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import EngineError
from ..governance.meter import Meter
from ..governance.pii import outbound
from ..governance.pii.masker import Redactor, StreamFilter
from ..reasoning import ReasoningSplitter, split_reasoning

if TYPE_CHECKING:
    from ..engines.backend import Backend

DONE = b"data: [DONE]\n\n"


def _as_is(chunk: dict[str, Any]) -> dict[str, Any]:
    return chunk


def shape_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = dict(usage or {})
    for key in ("prompt_tokens", "completion_tokens"):
        usage.setdefault(key, 0)
    usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0) or 0
    usage["prompt_cache_hit_tokens"] = cached
    usage["prompt_cache_miss_tokens"] = max(usage["prompt_tokens"] - cached, 0)
    return usage


class UsageTally:
    """A request's usage from an engine that reports it in parts: llama.cpp sends one report per
    prompt of a batched completions request, on that prompt's last chunk. Reports are kept per
    choice index (a later one for the same index replaces it) and summed."""

    def __init__(self) -> None:
        self._parts: dict[int | None, dict[str, Any]] = {}

    def add(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """Take ``chunk``'s usage; return the request's whole usage so far (unshaped)."""
        choices = chunk.get("choices") or []
        index = choices[0].get("index", 0) if choices and isinstance(choices[0], dict) else None
        self._parts[index] = chunk["usage"]
        if len(self._parts) == 1:
            return chunk["usage"]
        total: dict[str, Any] = {}
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            total[key] = sum(int(part.get(key) or 0) for part in self._parts.values())
        for details, field in (("prompt_tokens_details", "cached_tokens"), ("completion_tokens_details", "reasoning_tokens")):
            total[details] = {field: sum(int((part.get(details) or {}).get(field) or 0) for part in self._parts.values())}
        return total


def shape_chat(data: dict[str, Any], model_id: str, split: bool) -> dict[str, Any]:
    data["model"] = model_id
    for choice in data.get("choices", []):
        choice.setdefault("logprobs", None)
        message = choice.setdefault("message", {"role": "assistant", "content": None})
        message.setdefault("refusal", None)
        if split and message.get("content") is not None:
            reasoning, answer = split_reasoning(message["content"])
            message["reasoning_content"] = reasoning
            message["content"] = answer
    data["usage"] = shape_usage(data.get("usage"))
    return data


def shape_completion(data: dict[str, Any], model_id: str) -> dict[str, Any]:
    data["model"] = model_id
    for choice in data.get("choices", []):
        choice.setdefault("logprobs", None)
    data["usage"] = shape_usage(data.get("usage"))
    return data


def shape_embeddings(data: dict[str, Any], model_id: str) -> dict[str, Any]:
    data["model"] = model_id
    usage = data.get("usage") or {}
    data["usage"] = {"prompt_tokens": usage.get("prompt_tokens", 0), "total_tokens": usage.get("total_tokens", 0)}
    return data


def shape_rerank(data: dict[str, Any], model_id: str, documents: list[str], top_n: int | None,
                 return_documents: bool, estimate: int = 0) -> dict[str, Any]:
    """An engine's rerank answer — ``results`` of ``index`` and ``relevance_score`` (llama.cpp,
    vLLM) or ``score`` (SGLang) — in Jina's and Cohere's shape: best first, the first ``top_n``,
    each with its document's text if asked. Every one of ``documents`` must be scored once.

    Tokens: the engine's ``usage``, else the sum of its results' ``meta_info.prompt_tokens``
    (SGLang), else ``estimate`` (the gateway's own bound)."""
    scores: dict[int, float] = {}
    counted = 0
    for item in data.get("results") or ():
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score", item.get("score")) if isinstance(item, dict) else None
        if type(index) is not int or isinstance(score, bool) or not isinstance(score, (int, float)) or index in scores:
            raise EngineError("the engine sent a rerank result without one index and score")
        if not 0 <= index < len(documents):
            raise EngineError(f"the engine scored a document that was not sent (index {index})")
        scores[index] = float(score)
        meta = item.get("meta_info")
        counted += int(meta.get("prompt_tokens") or 0) if isinstance(meta, dict) else 0
    if sorted(scores) != list(range(len(documents))):
        raise EngineError(f"the engine scored {len(scores)} of the {len(documents)} documents")
    results = [{"index": i, "relevance_score": scores[i]} for i in sorted(scores, key=lambda i: (-scores[i], i))[:top_n]]
    if return_documents:
        for result in results:
            result["document"] = {"text": documents[result["index"]]}
    usage = data.get("usage") or {}
    tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or counted or estimate)
    return {"id": data.get("id") or f"rerank-{uuid.uuid4().hex}", "object": "list", "model": model_id,
            "results": results, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


class StreamShaper:
    """Rewrites one SSE stream, event by event.

    The engine is always asked for usage; it is passed on only when the client asked
    (``stream_options.include_usage``) and kept in ``self.usage`` either way.
    """

    def __init__(self, model_id: str, *, include_usage: bool, split_reasoning: bool, meter: Meter | None = None,
                 redactor: Redactor | None = None):
        self.model_id = model_id
        self.meter = meter
        # `detect` changes nothing: count once over the whole answer once it is out (Meter.after,
        # a long answer scanned apart), instead of filtering every chunk; `mask` / `tokenize`
        # filter chunk by chunk.
        policy = redactor.policy if redactor is not None else "off"
        self.redactor = redactor if policy in ("mask", "tokenize") else None
        self._detector = redactor if policy == "detect" and meter is not None else None
        self._seen: list[bytes] = []  # detect: the payloads, parsed at the end
        self._filters: dict[tuple[int, str], StreamFilter] = {}
        self._capture = meter is not None and meter.capture
        self.include_usage = include_usage
        self.splitter = ReasoningSplitter() if split_reasoning else None
        self.usage: dict[str, Any] | None = None
        self._tally = UsageTally()
        self.finished = False
        self._engine_model: bytes | None = None  # b'"model":"<engine id>"', learnt from the first chunk
        self._our_model = b'"model":' + orjson.dumps(model_id)
        self._markers: tuple[bytes, ...] = ()
        self._normalize = _as_is

    def speak(self, backend: "Backend") -> None:
        """Read the engine's dialect: chunks holding one of its markers go through its ``normalize``."""
        self._markers = backend.rewrite_markers
        self._normalize = backend.normalize

    def event(self, raw: bytes) -> bytes | None:
        """One SSE event in (without its blank-line terminator); bytes to send, or None to drop."""
        if not raw.startswith(b"data:"):
            return None  # comments / keep-alive pings
        payload = raw[5:].strip()
        if payload == b"[DONE]":
            self.finished = True
            if self._detector is not None:  # counted once the answer is out (Meter.after)
                self.meter.after.append(self._detect_answer)
            return DONE
        if self._detector is not None:
            self._seen.append(payload)
        if self._engine_model is not None and self.splitter is None and self.redactor is None and not self._capture \
                and b'"usage"' not in payload and self._engine_model in payload \
                and not any(marker in payload for marker in self._markers):
            # Fast path for plain token chunks: only the model id changes. A quote inside a JSON
            # string is escaped, so the unescaped pattern can only be the top-level field.
            return b"data: " + payload.replace(self._engine_model, self._our_model, 1) + b"\n\n"
        chunk = orjson.loads(payload)
        if not isinstance(chunk, dict):
            return None  # llama.cpp opens a batched completions stream with `data: null`
        if self._engine_model is None and isinstance(chunk.get("model"), str):
            self._engine_model = b'"model":' + orjson.dumps(chunk["model"])
        if "error" in chunk:
            return b"data: " + payload + b"\n\n"
        chunk = self._normalize(chunk)
        chunk["model"] = self.model_id
        if "usage" in chunk:
            self.usage = chunk["usage"] = shape_usage(self._tally.add(chunk))  # the request's whole usage so far
            if self.meter is not None:
                self.meter.add_usage(self.usage)
            if not self.include_usage:
                del chunk["usage"]
                if not chunk.get("choices"):
                    return None
        if self.splitter is not None and not self._split(chunk):
            return None
        if self.redactor is not None and not self._redact(chunk):
            return None
        if self.meter is not None and self.meter.capture:
            for choice in chunk.get("choices", []):
                text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
                if text:
                    self.meter.response_parts.append(text)
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    async def _detect_answer(self) -> None:
        texts = []
        for payload in self._seen:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(chunk, dict):
                continue
            for choice in chunk.get("choices") or []:
                holder = choice.get("delta") or {} if "delta" in choice else choice
                texts += [holder.get(k) or "" for k in ("content", "reasoning_content", "text")]
        await outbound(self._detector, "".join(texts))
        self.meter.pii = dict(self._detector.found)

    def _redact(self, chunk: dict[str, Any]) -> bool:
        """Mask / restore / count PII in the text fields; False when nothing is left to send."""
        keep = "usage" in chunk
        for choice in chunk.get("choices", []):
            index = choice.get("index", 0)
            final = choice.get("finish_reason") is not None
            holder = choice.get("delta") if "delta" in choice else choice
            fields = ("content", "reasoning_content") if "delta" in choice else ("text",)
            for name in fields:
                text = holder.get(name)
                if text is None and not final:
                    continue
                f = self._filters.get((index, name))
                if f is None:
                    f = self._filters[(index, name)] = StreamFilter(self.redactor)
                out = f.feed(text or "") + (f.finish() if final else "")
                if out or name in holder:
                    holder[name] = out
                keep = keep or bool(out)
            keep = keep or final or bool(holder.get("role")) or bool(holder.get("tool_calls"))
        if self.meter is not None:
            self.meter.pii = dict(self.redactor.found)
        return keep

    def _split(self, chunk: dict[str, Any]) -> bool:
        """Move reasoning into delta.reasoning_content; False when nothing is left to send."""
        keep = False
        for choice in chunk.get("choices", []):
            delta = choice.get("delta") or {}
            reasoning, answer = self.splitter.feed(delta.pop("content", None) or "")
            if choice.get("finish_reason") is not None:
                r2, a2 = self.splitter.finish()
                reasoning, answer = reasoning + r2, answer + a2
            if reasoning:
                delta["reasoning_content"] = reasoning
            if answer:
                delta["content"] = answer
            choice["delta"] = delta
            keep = keep or bool(delta) or choice.get("finish_reason") is not None
        return keep or "usage" in chunk
