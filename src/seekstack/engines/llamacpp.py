"""llama.cpp through xllamacpp: llama.cpp's native C++ server, in a child process.

The worker (``llamacpp_worker``) builds ``xllamacpp.CommonParams`` from a JSON spec and
runs ``xllamacpp.Server`` on a loopback port: continuous batching over ``slots``
sequences, each with ``context`` tokens (the engine's n_ctx is their product).
"""

from __future__ import annotations

import json
import os

from ..config import ModelConfig, trained_context
from .base import Capabilities, ProcessEngine, python_module_command, register_engine

# Reasoning formats llama.cpp parses natively (its --reasoning-format values).
NATIVE_REASONING = {"deepseek_r1": "deepseek"}


@register_engine("llamacpp")
class LlamaCppEngine(ProcessEngine):
    health_path = "/health"

    def build_capabilities(self, model: ModelConfig) -> Capabilities:
        fmt = model.reasoning_format()
        native = fmt in NATIVE_REASONING and model.reasoning_parser != "gateway"
        return Capabilities(
            context_length=model.context,
            slots=model.slots,
            chat=not model.embeddings,
            completions=not model.embeddings,
            embeddings=model.embeddings,
            media_input=False,  # needs a multimodal projector (mmproj), which seekstack does not load
            reasoning_format=fmt,
            native_reasoning=native,
            # llama.cpp checks a non-streamed request's socket only while otherwise idle
            cancels_only_streams=True,
            chat_template=model.chat_template,
            sampling_defaults=model.sampling_defaults(),
        )

    def spec(self) -> dict:
        model = self.model
        gpu_layers = 0 if model.device == "cpu" else (model.gpu_layers if model.gpu_layers is not None else -1)
        caps = self.capabilities
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
            "prompt_cache_mib": model.prompt_cache_mib,
            "rope_scaling": model.rope_scaling,
            "rope_scale": (trained_context(model, model.resolved_path()) or model.context) / model.context
            if model.rope_scaling else None,
            "reasoning": NATIVE_REASONING.get(caps.reasoning_format) if caps.native_reasoning else None,
        }

    def command(self) -> list[str]:
        return python_module_command("seekstack.engines.llamacpp_worker", json.dumps(self.spec()))
