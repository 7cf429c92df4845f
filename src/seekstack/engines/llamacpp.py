"""llama.cpp through xllamacpp: llama.cpp's native C++ server in a child process, and its dialect.

The worker (``llamacpp_worker``) builds ``xllamacpp.CommonParams`` from a JSON spec and
runs ``xllamacpp.Server`` on a private Unix socket (or a loopback port): continuous batching
over ``slots`` sequences, each with ``context`` tokens (the engine's n_ctx is their product).

Dialect: ``/tokenize`` and ``/apply-template`` count a prompt exactly; answers carry ``timings``
(dropped); a context overflow is ``exceed_context_size_error``; the server drops the connection
after a stream although its headers say keep-alive (so streams ask for ``Connection: close``);
load from ``llamacpp:requests_deferred`` and ``llamacpp:requests_processing``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ContextLengthError
from .backend import Backend, Kind
from .base import ProcessEngine, python_module_command
from .capabilities import Capabilities
from .llamacpp_worker import ENGINE_KEY_ENV
from .registry import EngineKind, register_engine
from .settings import LlamaCppSettings

if TYPE_CHECKING:
    from ..config import ModelConfig

# Reasoning formats llama.cpp parses natively (its --reasoning-format values).
NATIVE_REASONING = {"deepseek_r1": "deepseek"}


def native_reasoning(model: "ModelConfig") -> bool:
    return model.reasoning_format() in NATIVE_REASONING and model.reasoning_parser != "gateway"


class LlamaCppBackend(Backend):
    kind = "llamacpp"
    load_metrics = {"queued": "llamacpp:requests_deferred", "running": "llamacpp:requests_processing"}
    rewrite_markers = (b'"timings"',)
    close_after_stream = True

    def build_capabilities(self, model: "ModelConfig") -> Capabilities:
        return Capabilities(
            context_length=model.context,
            slots=model.slots,
            chat=not model.pooled,
            completions=not model.pooled,
            embeddings=model.embeddings,
            rerank=model.rerank,
            media_input=False,  # needs a multimodal projector (mmproj), which seekstack does not load
            reasoning_format=model.reasoning_format(),
            native_reasoning=native_reasoning(model),
            # llama.cpp checks a non-streamed request's socket only while otherwise idle
            cancels_only_streams=True,
            resumes="prefill",  # a trailing assistant message is continued (its --prefill-assistant default)
            chat_template=model.chat_template,
            sampling_defaults=model.sampling_defaults(),
        )

    def normalize(self, chunk: dict[str, Any]) -> dict[str, Any]:
        chunk.pop("timings", None)
        return chunk

    async def count_tokens(self, kind: Kind, body: dict[str, Any]) -> int | None:
        if kind == "chat":
            template = await self._call("/apply-template", {"messages": body["messages"],
                                                            **{k: body[k] for k in ("tools", "chat_template_kwargs") if k in body}})
            text = template["prompt"]
        else:
            text = body["prompt"]
        return len((await self._call("/tokenize", {"content": text}))["tokens"])

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.request(self.base_url, "POST", path, orjson.dumps(body), headers=self._json_headers)
        try:
            content = await response.read()
        finally:
            response.close()
        if response.status != 200:
            raise self.translate_error(response.status, content)
        return orjson.loads(content)

    def context_error(self, status: int, err: dict[str, Any], message: str) -> ContextLengthError | None:
        if err.get("type") == "exceed_context_size_error" or "exceeds the available context" in message:
            n_prompt, n_ctx = err.get("n_prompt_tokens"), err.get("n_ctx")
            if n_prompt is not None and n_ctx is not None:
                return ContextLengthError(f"the prompt is {n_prompt} tokens but the model's context length is {n_ctx} tokens",
                                          fix="shorten the prompt or serve the model with a larger `context`", param="messages")
            return ContextLengthError(message, fix="shorten the prompt")
        return super().context_error(status, err, message)


class LlamaCppProcess(ProcessEngine):
    def spec(self) -> dict:
        from ..config import trained_context
        from ..planner.plan import BATCH, embedding_batch

        model = self.model
        gpu_layers = 0 if model.device == "cpu" else (model.gpu_layers if model.gpu_layers is not None else -1)
        return {
            "model_path": str(model.resolved_path()),
            "host": str(self.socket_path) if self.socket_path else self.host,  # llama.cpp: a host ending .sock is a Unix socket
            "port": self.port or 0,
            "n_ctx": model.context * model.slots,
            "n_parallel": model.slots,
            "threads": model.threads or os.cpu_count() or 1,
            "gpu_layers": gpu_layers,
            "chat_template": model.chat_template,
            "embeddings": model.embeddings,
            "rerank": model.rerank,
            "batch": embedding_batch(model.context) if model.pooled else BATCH,  # as the plan counts it
            "prompt_cache_mib": model.prompt_cache_mib,
            "rope_scaling": model.rope_scaling,
            "rope_scale": (trained_context(model, model.resolved_path()) or model.context) / model.context
            if model.rope_scaling else None,
            "reasoning": NATIVE_REASONING.get(model.reasoning_format()) if native_reasoning(model) else None,
            "served_name": model.name,
        }

    def environment(self) -> dict[str, str]:
        return {ENGINE_KEY_ENV: self.api_key} if self.api_key else {}

    def command(self) -> list[str]:
        if self.model.engine.simulate:
            return python_module_command("seekstack.sim", "llamacpp-worker", json.dumps(self.spec()))
        return python_module_command("seekstack.engines.llamacpp_worker", json.dumps(self.spec()))


register_engine(EngineKind("llamacpp", LlamaCppSettings, LlamaCppBackend, LlamaCppProcess,
                           summary="llama.cpp (xllamacpp): GGUF on CPU or GPU"))
