"""``engine: remote`` — an OpenAI-compatible server that seekstack does not start (a vLLM run by
another team, a cloud endpoint reached through a private link, the benchmark's stub).

It fits the same Engine interface: ``start``/``stop`` do nothing, ``health`` asks the server,
and ``wait`` never returns (there is no process to exit); the supervisor's heartbeat takes
the replica out of rotation while the server does not answer and back when it does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..config import ModelConfig
from .base import Capabilities, Engine, register_engine


@register_engine("remote")
class RemoteEngine(Engine):
    health_path = "/health"

    def __init__(self, model: ModelConfig, *, http: Any = None, **_: Any):
        self.model = model
        self._http = http
        self.port = None
        self.capabilities = Capabilities(
            context_length=model.context, slots=model.slots, embeddings=model.embeddings,
            chat=not model.embeddings, completions=not model.embeddings,
            media_input=True,  # unknown here: the server accepts or refuses image and audio parts itself
            counts_tokens=False,  # OpenAI servers have no /tokenize: prompts are bounded by their size
            reasoning_format=model.reasoning_format(), native_reasoning=False,
            chat_template=model.chat_template, sampling_defaults=model.sampling_defaults())

    @property
    def base_url(self) -> str:
        assert self.model.url is not None
        return self.model.url.rstrip("/")

    async def start(self) -> None:
        return None

    async def health(self) -> bool:
        try:
            status, _ = await self._http.get(self.base_url, self.health_path, timeout=1.0)
            return status == 200
        except Exception:
            return False

    async def stop(self, timeout: float = 10.0) -> None:
        return None

    async def wait(self) -> int:
        await asyncio.Event().wait()
        return 0
