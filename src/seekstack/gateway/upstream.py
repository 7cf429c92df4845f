"""Talk to engine replicas over pooled HTTP: pick a replica, send, retry a failed connection once.

llama.cpp's server drops the connection after a streamed response while its headers
still say keep-alive; streamed requests therefore ask for ``Connection: close``, and a
connection that fails before any response byte is retried (on another replica when
there is one). Engine error bodies are translated into the exception tree here, once.
"""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, AsyncIterator

import asyncio

import orjson

from ..engines.http import EngineConnectionError, EngineHTTP, EngineResponse, EngineStreamError
from ..errors import (ContextLengthError, EngineError, EngineUnavailableError, InvalidRequestError,
                      SeekstackError, UnsupportedError)
from ..router import Router
from ..supervisor import Replica


@dataclass(eq=False)
class Lease:
    """A replica held for one request; ``aclose()`` exactly once."""

    replica: Replica
    response: EngineResponse
    content: bytes = b""          # the body, for non-streamed requests
    _released: bool = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.replica.outstanding -= 1

    async def aclose(self) -> None:
        try:
            self.response.close()  # back to the pool if it finished cleanly, else closed
        finally:
            self.release()

    async def events(self) -> AsyncIterator[list[bytes]]:
        """A streamed answer's SSE events (without their blank-line terminators), in the batches they arrived in.

        Iterate it inside ``aclosing()``: a generator left suspended is closed by a task the
        event loop starts when it is collected — one more task per request, after the fact."""
        buffer = b""
        async with aclosing(self.response.iter_chunks()) as pieces:
            async for piece in pieces:
                buffer += piece
                events = []
                while (end := buffer.find(b"\n\n")) >= 0:
                    events.append(buffer[:end])
                    buffer = buffer[end + 2:]
                if events:
                    yield events


class Upstream:
    def __init__(self, router: Router, http: EngineHTTP, retries: int = 1, timeout: float = 600.0):
        self.router = router
        self.http = http
        self.retries = retries
        self.timeout = timeout

    async def send(self, model: str, path: str, body: dict[str, Any], *, stream: bool = False,
                   avoid: frozenset[Replica] = frozenset()) -> Lease:
        """Send to a replica (not one in ``avoid`` while another is left); return a Lease
        (stream: only the head has been read).

        The wait for the response head is bounded by ``scheduler.timeout``; a stream then has
        no timer per chunk (a hung engine is caught by the supervisor's heartbeat instead)."""
        tried: set[Replica] = set(avoid)
        last_error: Exception | None = None
        data = orjson.dumps(body)
        headers = STREAM_HEADERS if stream else JSON_HEADERS
        for _ in range(self.retries + 1):
            replica = self._pick(model, tried)
            replica.outstanding += 1
            response = None
            try:
                async with asyncio.timeout(self.timeout):
                    response = await self.http.request(replica.engine.base_url, "POST", path, data, headers=headers)
                    lease = Lease(replica, response)
                    if response.status != 200 or not stream:
                        lease.content = await response.read()
            except EngineConnectionError as exc:
                replica.outstanding -= 1
                tried.add(replica)
                last_error = exc
                continue
            except TimeoutError:
                replica.outstanding -= 1
                raise _timed_out(model) from None
            except EngineStreamError:
                replica.outstanding -= 1
                raise EngineError("the engine connection broke while answering") from None
            except BaseException:  # cancelled (the client left): the engine connection goes too
                replica.outstanding -= 1
                if response is not None:
                    response.close()
                raise
            if response.status != 200:
                await lease.aclose()
                raise engine_error(response.status, lease.content)
            return lease
        raise EngineUnavailableError(f"model {model!r}: the engine connection failed ({last_error})",
                                     retry_after=2, fix="retry after the Retry-After delay")

    def _pick(self, model: str, tried: set[Replica]) -> Replica:
        try:
            return self.router.pick(model, exclude=tried)
        except EngineUnavailableError:
            if not tried:
                raise
            return self.router.pick(model)  # only failed ones left: retry one of them once

    async def tokenize(self, model: str, text: str) -> int:
        lease = await self.send(model, "/tokenize", {"content": text})
        await lease.aclose()
        return len(orjson.loads(lease.content)["tokens"])

    async def render_chat(self, model: str, body: dict[str, Any]) -> str:
        lease = await self.send(model, "/apply-template", {"messages": body["messages"], **_template_args(body)})
        await lease.aclose()
        return orjson.loads(lease.content)["prompt"]


JSON_HEADERS = {"content-type": "application/json"}
# llama.cpp drops the connection after a stream although its headers say keep-alive: say close.
STREAM_HEADERS = {"content-type": "application/json", "connection": "close"}


def _timed_out(model: str) -> EngineUnavailableError:
    return EngineUnavailableError(f"model {model!r} did not answer in time", retry_after=5,
                                  fix="retry later, or raise scheduler.timeout")


def _template_args(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in ("tools", "chat_template_kwargs") if k in body}


def engine_error(status: int, content: bytes) -> SeekstackError:
    """Translate an engine's error response into our exception tree."""
    try:
        err = orjson.loads(content).get("error", {})
        if not isinstance(err, dict):
            err = {"message": str(err)}
    except (orjson.JSONDecodeError, AttributeError):
        err = {"message": content[:200].decode("utf-8", "replace")}
    message = str(err.get("message") or f"engine returned HTTP {status}")
    if err.get("type") == "exceed_context_size_error" or "exceeds the available context" in message:
        n_prompt, n_ctx = err.get("n_prompt_tokens"), err.get("n_ctx")
        if n_prompt is not None and n_ctx is not None:
            return ContextLengthError(f"the prompt is {n_prompt} tokens but the model's context length is {n_ctx} tokens",
                                      fix="shorten the prompt or serve the model with a larger `context`", param="messages")
        return ContextLengthError(message, fix="shorten the prompt")
    if status == 501 or err.get("type") == "not_supported_error":
        return UnsupportedError(message)
    if 400 <= status < 500:
        return InvalidRequestError(message)
    if status == 503:
        return EngineUnavailableError(message, retry_after=2)
    return EngineError(f"engine error (HTTP {status}): {message}")
