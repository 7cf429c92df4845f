"""The Backend interface: the request path to one engine endpoint, in that engine's dialect.

A gateway knows OpenAI's API; each engine speaks a dialect of it. A :class:`Backend` owns one
dialect, so nothing outside an adapter compares engine names:

- :meth:`Backend.send` — a chat / completion / embedding / rerank request, streamed or not, returning an
  :class:`EngineReply` whose :meth:`~EngineReply.events` are SSE events framed the same way
  whatever the server sent (LF or CRLF line ends, comments dropped, multi-line data joined);
- :meth:`Backend.count_tokens` — the prompt's exact size where the engine can count it, else None
  (the engine's own context error then becomes our 400 ``context_length_exceeded``);
- :meth:`Backend.translate_error` — the engine's error body into our exception tree, once;
- :meth:`Backend.normalize` — a parsed chunk or response into OpenAI / DeepSeek form (field names
  the dialect spells differently); :attr:`Backend.rewrite_markers` says which raw chunks need it;
- :meth:`Backend.health` and :meth:`Backend.load` — read from the engine (its health route and
  its own metric names).

Starting, waiting for and stopping an engine process is a separate concern (``base.ProcessEngine``).
"""

from __future__ import annotations

import abc
import logging
from contextlib import aclosing
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, ClassVar, Literal

import orjson

from ..errors import (ContextLengthError, EngineError, EngineUnavailableError, InvalidRequestError,
                      SeekstackError, UnsupportedError)
from .capabilities import Capabilities
from .http import EngineConnectionError, EngineHTTP, EngineResponse, EngineStreamError
from .keys import engine_tls

if TYPE_CHECKING:
    from ..config import ModelConfig

log = logging.getLogger("seekstack.engines")

Kind = Literal["chat", "completion", "embedding", "rerank"]
PATHS: dict[str, str] = {"chat": "/v1/chat/completions", "completion": "/v1/completions", "embedding": "/v1/embeddings",
                         "rerank": "/v1/rerank"}
JSON = "application/json"

READY, STARTING, DEGRADED, DOWN = "ready", "starting", "degraded", "down"
MAX_EVENT_BYTES = 4 * 2**20  # one SSE event (a chunk of tokens, or a usage report) is never near this


@dataclass(frozen=True)
class Health:
    state: str            # ready | starting | degraded | down
    reason: str = ""

    @property
    def serving(self) -> bool:
        return self.state in (READY, DEGRADED)


@dataclass(frozen=True)
class Load:
    """What the engine says it is doing (None: the engine does not say)."""

    queued: float | None = None     # requests waiting for a slot / KV room
    running: float | None = None    # requests being decoded
    kv_use: float | None = None     # share of the KV cache in use, 0..1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def strain(self) -> str | None:
        """Why an engine that answers is saturated (requests wait, or its KV cache is full); None: it is not."""
        if self.queued:
            return f"{self.queued:.0f} request(s) waiting in the engine"
        if self.kv_use is not None and self.kv_use >= 0.95:
            return f"KV cache {self.kv_use:.0%} full"
        return None


class EngineReply:
    """An engine's answer to one request; the head is in. ``close()`` exactly once."""

    def __init__(self, response: EngineResponse, content: bytes = b""):
        self.response = response
        self.status = response.status
        self.content = content  # the body, for non-streamed requests

    def close(self) -> None:
        self.response.close()  # back to the pool if it finished cleanly, else closed

    def abort(self, reason: str) -> None:
        self.response.abort(reason)

    async def events(self) -> AsyncIterator[list[bytes]]:
        """A streamed answer's SSE events, each ``data: …`` without its blank-line terminator, in
        the batches they arrived in. Line ends may be LF, CRLF or CR (the SSE spec allows all three).

        Iterate it inside ``aclosing()``: a generator left suspended is closed by a task the
        event loop starts when it is collected — one more task per request, after the fact."""
        buffer = b""
        async with aclosing(self.response.iter_chunks()) as pieces:
            async for piece in pieces:
                buffer, events = _frame(buffer + piece, final=False)
                if events:
                    yield events
                if len(buffer) > MAX_EVENT_BYTES:  # an engine that never ends an event cannot fill our memory
                    raise EngineStreamError(f"the engine sent an event longer than {MAX_EVENT_BYTES} bytes")
        if buffer:  # the body ended on a lone CR that was waiting for its LF
            _, events = _frame(buffer, final=True)
            if events:
                yield events


def _frame(buffer: bytes, final: bool) -> tuple[bytes, list[bytes]]:
    """Split complete events off ``buffer``: (what is left, the events)."""
    held = False
    if b"\r" in buffer:
        held = buffer.endswith(b"\r") and not final  # perhaps half of a CRLF: wait for the next piece
        buffer = buffer[:-1] if held else buffer
        buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    events = []
    while (end := buffer.find(b"\n\n")) >= 0:
        event = buffer[:end]
        buffer = buffer[end + 2:]
        if b"\n" in event or not event.startswith(b"data:"):
            event = _join_data(event)
            if event is None:
                continue
        events.append(event)
    return buffer + (b"\r" if held else b""), events


def _join_data(event: bytes) -> bytes | None:
    """One SSE event of several lines (``event:``, ``id:``, comments, data over lines) → ``data: …``."""
    data = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"data: " + b"\n".join(data) if data else None


def parse_prometheus(text: str, names: set[str]) -> dict[str, float]:
    """Sum each of ``names`` over its label sets in a Prometheus text page (other lines ignored)."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, _, rest = line.partition("{") if "{" in line.split(" ", 1)[0] else line.partition(" ")
        if name not in names:
            continue
        value = rest.rsplit("}", 1)[-1].split() if "}" in rest else rest.split()
        try:
            sums[name] = sums.get(name, 0.0) + float(value[0])
        except (IndexError, ValueError):
            continue
    return sums


class Backend(abc.ABC):
    """One engine endpoint (a replica, or a server someone else runs), in its dialect."""

    kind: ClassVar[str]
    health_path: ClassVar[str] = "/health"
    metrics_path: ClassVar[str | None] = "/metrics"
    # {"queued": metric, "running": metric, "kv_use": metric}: the engine's own names (None: not exposed)
    load_metrics: ClassVar[dict[str, str]] = {}
    kv_use_scale: ClassVar[float] = 1.0      # the KV metric is a ratio (1) or a percentage (100)
    # Raw stream chunks containing one of these need :meth:`normalize`; others pass through as they are.
    rewrite_markers: ClassVar[tuple[bytes, ...]] = ()
    # Ask the engine to close the connection after a stream (llama.cpp drops it anyway).
    close_after_stream: ClassVar[bool] = False

    def __init__(self, http: EngineHTTP, base_url: str, model: "ModelConfig", *, api_key: str | None = None):
        self.http = http
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        http.trust(base_url, engine_tls(model.engine))
        self.capabilities = self.build_capabilities(model)
        auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._json_headers = {"content-type": JSON, **auth}
        self._stream_headers = {**self._json_headers, **({"connection": "close"} if self.close_after_stream else {})}
        self._get_headers = auth or None

    @abc.abstractmethod
    def build_capabilities(self, model: "ModelConfig") -> Capabilities: ...

    # ------------------------------------------------------------ request path

    def path(self, kind: Kind) -> str:
        return PATHS[kind]

    def outgoing(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body as this engine wants it (the model id it knows, its own parameter names)."""
        return body

    async def send(self, kind: Kind, body: dict[str, Any], *, stream: bool = False,
                   timeout: float | None = None) -> EngineReply:
        """Send one request; return once the head is in (and, unless streamed, the whole body).

        Raises the translated error for a non-200 answer, ``EngineConnectionError`` when nothing
        was answered (safe to retry elsewhere), ``EngineStreamError`` when the answer broke."""
        response = await self.http.request(self.base_url, "POST", self.path(kind), orjson.dumps(self.outgoing(body)),
                                           headers=self._stream_headers if stream else self._json_headers,
                                           timeout=timeout)
        reply = EngineReply(response)
        try:
            if response.status != 200 or not stream:
                reply.content = await response.read()
        except BaseException:
            reply.close()
            raise
        if response.status != 200:
            reply.close()
            raise self.translate_error(response.status, reply.content)
        return reply

    async def count_tokens(self, kind: Kind, body: dict[str, Any]) -> int | None:
        """The prompt's size in tokens as the engine counts it (chat: after its chat template), or
        None when this engine cannot say. ``body`` is the request (chat) or ``{"prompt": text}``."""
        return None

    def normalize(self, chunk: dict[str, Any]) -> dict[str, Any]:
        """A parsed stream chunk or whole response into OpenAI / DeepSeek form (in place)."""
        return chunk

    def translate_error(self, status: int, content: bytes) -> SeekstackError:
        """The engine's error answer as our exception (OpenAI's error shape and its kin)."""
        err = _error_object(content)
        message = str(err.get("message") or f"engine returned HTTP {status}")
        context = self.context_error(status, err, message)
        if context is not None:
            return context
        if status in (401, 403):
            return EngineError(f"the engine refused seekstack's credentials (HTTP {status})",
                               fix="check the engine's API key (api_key_env / api_key_file) in seekstack.yaml")
        if status == 404 and "model" in message.lower():
            return EngineError(f"the engine does not serve this model: {message}",
                               fix="set engine.upstream_model to the id the server lists at /v1/models")
        if status == 501 or err.get("type") == "not_supported_error":
            return UnsupportedError(message)
        if status in (429, 503):
            return EngineUnavailableError(f"the engine is overloaded: {message}", retry_after=2)
        if 400 <= status < 500:
            return InvalidRequestError(message)
        return EngineError(f"engine error (HTTP {status}): {message}")

    def context_error(self, status: int, err: dict[str, Any], message: str) -> ContextLengthError | None:
        """The dialect's way of saying the prompt does not fit, as our 400; None when it is not that."""
        if err.get("code") == "context_length_exceeded" or (status == 400 and "context length" in message.lower()):
            return ContextLengthError(message, fix="shorten the prompt, or lower max_tokens")
        return None

    # ------------------------------------------------------------ state

    async def health(self, timeout: float = 1.0) -> Health:
        try:
            status, body = await self.http.get(self.base_url, self.health_path, timeout=timeout, headers=self._get_headers)
        except TimeoutError:
            return Health(DOWN, f"no answer from {self.health_path} within {timeout:g} s")
        except EngineConnectionError as exc:
            return Health(DOWN, f"no answer from {self.health_path}: {exc}")
        except Exception as exc:  # noqa: BLE001 — any failure to answer is "down", with its reason
            return Health(DOWN, f"no answer from {self.health_path} ({type(exc).__name__})")
        return self.health_from(status, body)

    def health_from(self, status: int, body: bytes) -> Health:
        if status == 200:
            return Health(READY)
        if status == 503:
            return Health(STARTING, "the engine is loading its model")
        if status in (401, 403):
            return Health(DOWN, "the engine refused seekstack's API key")
        return Health(DOWN, f"{self.health_path} answered HTTP {status}")

    async def metrics_page(self, timeout: float = 1.0) -> str | None:
        """The engine's Prometheus page (None: it has none, or did not answer)."""
        if self.metrics_path is None:
            return None
        try:
            status, body = await self.http.get(self.base_url, self.metrics_path, timeout=timeout, headers=self._get_headers)
        except Exception as exc:  # noqa: BLE001 — an engine without /metrics, or one that is restarting
            log.debug("engine metrics from %s unavailable: %s", self.base_url, exc)
            return None
        return body.decode("utf-8", "replace") if status == 200 else None

    async def load(self, timeout: float = 1.0) -> Load:
        if not self.load_metrics:
            return Load()
        page = await self.metrics_page(timeout)
        if page is None:
            return Load()
        sums = parse_prometheus(page, set(self.load_metrics.values()))
        values = {field: sums.get(metric) for field, metric in self.load_metrics.items()}
        if values.get("kv_use") is not None:
            values["kv_use"] = values["kv_use"] / self.kv_use_scale
        return Load(**values)


def _error_object(content: bytes) -> dict[str, Any]:
    """``{"error": {...}}`` (OpenAI, llama.cpp, newer vLLM), ``{"object": "error", "message": …}``
    (vLLM, SGLang), ``{"detail": …}`` (FastAPI), or text."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {"message": content[:200].decode("utf-8", "replace").strip()}
    if not isinstance(data, dict):
        return {"message": str(data)[:200]}
    err = data.get("error")
    if isinstance(err, dict):
        return err
    if isinstance(err, str):
        return {"message": err}
    if "message" in data:
        return data
    if "detail" in data:
        return {"message": str(data["detail"])[:500]}
    return {"message": str(data)[:200]}
