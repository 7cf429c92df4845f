"""The load generator: streamed chat requests at a fixed concurrency or a Poisson rate.

Each request records, as vLLM's ``bench serve`` does: when it started, when each token chunk
arrived (TTFT is the first; ITL the gaps), when it ended (E2E), and the token counts from the
server's usage (``stream_options.include_usage``; the number of token chunks when a server sends
no usage). The run is bounded by a request count and a duration; requests still running at the
deadline are cancelled and reported as incomplete.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import orjson

from ..engines.http import EngineHTTP
from ..errors import InvalidRequestError
from .datasets import Prompt


@dataclass
class RequestResult:
    start: float                      # seconds since the run started
    end: float = 0.0
    ttft: float | None = None         # seconds from start to the first token
    chunk_times: list[float] = field(default_factory=list)  # arrival of each token chunk (run clock)
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.ttft is not None

    @property
    def e2e(self) -> float:
        return self.end - self.start

    @property
    def tpot(self) -> float | None:
        """(E2E − TTFT) ÷ (output tokens − 1): vLLM's time per output token."""
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)

    @property
    def itl(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:])]

    def to_json(self) -> dict[str, Any]:
        return {"start": round(self.start, 6), "ttft": self.ttft, "e2e": round(self.e2e, 6), "tpot": self.tpot,
                "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens, "error": self.error,
                "chunk_times": [round(t, 6) for t in self.chunk_times]}


@dataclass
class LoadSpec:
    base_url: str                     # the OpenAI base URL, e.g. http://127.0.0.1:8800/v1
    model: str
    prompts: list[Prompt]
    api_key: str | None = None
    concurrency: int = 4              # fixed concurrency; with `rate`: the most requests in flight
    rate: float | None = None         # Poisson arrivals per second; None: closed loop at `concurrency`
    max_tokens: int = 128
    ignore_eos: bool = False          # ask for exactly max_tokens (llama.cpp, vLLM and SGLang honour it)
    duration: float = 300.0           # hard bound on the whole run, in seconds
    request_timeout: float = 600.0
    seed: int = 0
    warmup: int = 0                   # requests sent first and not counted


def split_url(base_url: str) -> tuple[str, str]:
    """``http://h:1/v1`` → (``http://h:1``, ``/v1``)."""
    parts = urlsplit(base_url.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequestError(f"{base_url!r} is not an http(s) URL", fix="pass --base-url http://HOST:PORT/v1")
    return f"{parts.scheme}://{parts.netloc}", parts.path


class LoadGenerator:
    def __init__(self, spec: LoadSpec, on_done: Callable[[RequestResult], None] | None = None):
        self.spec = spec
        self.on_done = on_done or (lambda r: None)
        self.origin, self.prefix = split_url(spec.base_url)
        self.headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if spec.api_key:
            self.headers["authorization"] = f"Bearer {spec.api_key}"
        self.http = EngineHTTP(read_timeout=spec.request_timeout)
        self.results: list[RequestResult] = []
        self._t0 = 0.0

    async def run(self) -> tuple[list[RequestResult], float]:
        """Send every prompt (or stop at the duration); return the results and the run's length.

        ``warmup`` requests go first, at the same concurrency, and are not counted: they fill
        connection pools and the engine's prompt cache, so the order of runs matters less."""
        if self.spec.warmup:
            measured, on_done = self.spec.prompts, self.on_done
            self.spec.prompts = [measured[i % len(measured)] for i in range(self.spec.warmup)]
            self.on_done = lambda r: None
            self._t0 = time.monotonic()
            try:
                async with asyncio.timeout(self.spec.duration):
                    await self._closed_loop()
            except TimeoutError:
                pass
            self.spec.prompts, self.on_done, self.results = measured, on_done, []
        self._t0 = time.monotonic()
        try:
            async with asyncio.timeout(self.spec.duration):
                if self.spec.rate is None:
                    await self._closed_loop()
                else:
                    await self._poisson()
        except TimeoutError:
            pass
        finally:
            await self.http.close()
        finished = [r for r in self.results if r.end]
        duration = (max(r.end for r in finished) - min(r.start for r in finished)) if finished else 0.0
        return self.results, duration

    async def _closed_loop(self) -> None:
        queue = list(reversed(self.spec.prompts))

        async def worker():
            while queue:
                await self._one(queue.pop())

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.spec.concurrency, len(queue))):
                group.create_task(worker())

    async def _poisson(self) -> None:
        rng = random.Random(self.spec.seed)
        limit = asyncio.Semaphore(self.spec.concurrency)

        async def limited(prompt):
            async with limit:
                await self._one(prompt)

        async with asyncio.TaskGroup() as group:
            for i, prompt in enumerate(self.spec.prompts):
                if i:
                    await asyncio.sleep(rng.expovariate(self.spec.rate))
                group.create_task(limited(prompt))

    def _body(self, prompt: Prompt) -> bytes:
        body: dict[str, Any] = {"model": self.spec.model, "messages": prompt.messages, "stream": True,
                                "stream_options": {"include_usage": True},
                                "max_tokens": prompt.max_tokens or self.spec.max_tokens}
        if self.spec.ignore_eos:
            body["ignore_eos"] = True
        return orjson.dumps(body)

    async def _one(self, prompt: Prompt) -> None:
        result = RequestResult(start=time.monotonic() - self._t0)
        self.results.append(result)
        try:
            async with asyncio.timeout(self.spec.request_timeout):
                await self._stream(prompt, result)
        except asyncio.CancelledError:
            result.error = "cancelled at the run's time limit"
            raise
        except TimeoutError:
            result.error = f"no answer within {self.spec.request_timeout:g} s"
        except Exception as exc:  # connection refused, reset …: a failed request, not a failed run
            result.error = f"{type(exc).__name__}: {exc}"
        result.end = time.monotonic() - self._t0
        if result.error is None and result.ttft is None:
            result.error = "the stream ended without a token"
        self.on_done(result)

    async def _stream(self, prompt: Prompt, result: RequestResult) -> None:
        response = await self.http.request(self.origin, "POST", self.prefix + "/chat/completions", self._body(prompt),
                                           headers=self.headers)
        try:
            if response.status != 200:
                result.error = f"HTTP {response.status}: {_error_message(await response.read())}"
                return
            buffer, chunks = b"", 0
            async for piece in response.iter_chunks():
                now = time.monotonic() - self._t0
                buffer += piece
                while (cut := buffer.find(b"\n\n")) >= 0:
                    event, buffer = buffer[:cut], buffer[cut + 2:]
                    if not event.startswith(b"data:"):
                        continue
                    payload = event[5:].strip()
                    if payload == b"[DONE]":
                        continue
                    data = orjson.loads(payload)
                    if "error" in data:
                        result.error = _error_message(payload)
                        continue
                    if _has_token(data):
                        chunks += 1
                        result.chunk_times.append(now)
                        if result.ttft is None:
                            result.ttft = now - result.start
                    usage = data.get("usage")
                    if usage:
                        result.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                        result.output_tokens = int(usage.get("completion_tokens") or 0)
            if not result.output_tokens:
                result.output_tokens = chunks
        finally:
            response.close()


def _has_token(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("reasoning_content") or choice.get("text"):
            return True
    return False


def _error_message(body: bytes) -> str:
    try:
        error = orjson.loads(body).get("error")
        return str(error.get("message") if isinstance(error, dict) else error)[:300]
    except Exception:
        return body[:300].decode("utf-8", "replace")
