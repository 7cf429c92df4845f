"""``engine: openai`` — any OpenAI-compatible server that seekstack does not start (a vLLM run by
another team, a server on a GPU host, a cloud endpoint over a private link) — and the dialect
that vLLM and SGLang share with it.

What it sends: OpenAI's routes only (no llama.cpp ``/tokenize`` or ``/apply-template``), the
model id the server knows (``upstream_model``), and the server's API key as a bearer token,
read from an environment variable or a 0600 file, never logged. What it reads: SSE with LF or
CRLF line ends, OpenAI's error shape and vLLM's / SGLang's (``{"object": "error", …}``), and
``reasoning`` (vLLM ≥ 0.11's name) as DeepSeek's ``reasoning_content``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backend import Backend
from .capabilities import Capabilities
from .registry import EngineKind, register_engine
from .settings import OpenAISettings

if TYPE_CHECKING:
    from ..config import ModelConfig


class OpenAIDialect(Backend):
    """OpenAI's API as vLLM, SGLang and other servers speak it."""

    kind = "openai"
    rewrite_markers = (b'"reasoning"',)
    native_reasoning_default = False  # does the server split DeepSeek-R1 reasoning itself?
    counts_tokens = False
    resumes: str | None = None  # an unknown server may not continue a final assistant message

    def build_capabilities(self, model: "ModelConfig") -> Capabilities:
        fmt = model.reasoning_format()
        native = fmt != "none" and (model.reasoning_parser == "engine" or
                                    (model.reasoning_parser == "auto" and self.native_reasoning_default))
        return Capabilities(
            context_length=model.context, slots=model.slots, embeddings=model.embeddings, rerank=model.rerank,
            chat=not model.pooled, completions=not model.pooled,
            media_input=True,  # the server accepts or refuses image and audio parts itself
            counts_tokens=self.counts_tokens, reasoning_format=fmt, native_reasoning=native,
            resumes=self.resumes, chat_template=model.chat_template, sampling_defaults=model.sampling_defaults())

    def normalize(self, chunk: dict[str, Any]) -> dict[str, Any]:
        for choice in chunk.get("choices") or ():
            holder = choice.get("delta") if "delta" in choice else choice.get("message")
            if isinstance(holder, dict) and "reasoning" in holder:
                reasoning = holder.pop("reasoning")
                if holder.get("reasoning_content") is None and reasoning is not None:
                    holder["reasoning_content"] = reasoning
        return chunk


class OpenAIBackend(OpenAIDialect):
    """A server someone else runs: its base URL, key and model id come from the settings."""

    def __init__(self, http, base_url, model, *, api_key=None):
        settings: OpenAISettings = model.engine
        self.upstream_model = settings.upstream_model or model.name
        self.health_path = settings.health_path  # type: ignore[misc]
        super().__init__(http, base_url, model, api_key=api_key)
        self.metrics_path = None  # type: ignore[misc]  (a foreign server's metrics are its own business)

    def outgoing(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("model") != self.upstream_model:
            body = {**body, "model": self.upstream_model}
        return body


register_engine(EngineKind("openai", OpenAISettings, OpenAIBackend,
                           summary="any OpenAI-compatible server seekstack does not start"))
