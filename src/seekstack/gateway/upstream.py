"""Send a request to one of a model's endpoints through its Backend, and keep it going when
that endpoint fails.

- Before the client has anything (a refused or broken connection, a 5xx, a body that broke
  off), the request goes to another endpoint, up to ``scheduler.retries`` times; the failed
  endpoint is ejected at once (its breaker opens: ``traffic/breaker.py``).
- A stream that breaks mid-way goes on on another endpoint from where it broke
  (:class:`ResumingStream`, ``traffic/resume.py``).

The dialect — paths, headers, the engine's errors, SSE framing — is the Backend's
(``engines/backend.py``); which endpoint, and waiting for one, is the Router's.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, AsyncIterator

from ..engines.backend import EngineReply, Kind
from ..engines.http import EngineConnectionError, EngineStreamError
from ..errors import EngineError, EngineUnavailableError, SeekstackError
from ..supervisor import Replica
from ..traffic.resume import Continuation
from ..traffic.router import Ask, Router


@dataclass(eq=False)
class Lease:
    """An endpoint's slot held for one request; ``aclose()`` exactly once."""

    replica: Replica
    reply: EngineReply
    router: Router
    _released: bool = False

    def __post_init__(self) -> None:
        self.replica.leases.add(self)

    @property
    def content(self) -> bytes:
        return self.reply.content

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.replica.leases.discard(self)
            self.router.release(self.replica)

    async def aclose(self) -> None:
        try:
            self.reply.close()
        finally:
            self.release()

    def abort(self, reason: str) -> None:
        self.reply.abort(reason)

    def events(self) -> AsyncIterator[list[bytes]]:
        return self.reply.events()


class Upstream:
    def __init__(self, router: Router, retries: int = 2, timeout: float = 600.0, resume: bool = True):
        self.router = router
        self.retries = retries
        self.timeout = timeout
        self.resume = resume

    async def send(self, model: str, kind: Kind, body: dict[str, Any], *, stream: bool = False,
                   avoid: frozenset[Replica] = frozenset(), ask: Ask = Ask()) -> Lease:
        """Send to an endpoint (not one in ``avoid`` while another is left); return a Lease
        (stream: only the head has been read).

        The wait for the response head is bounded by ``scheduler.timeout``; a stream then has
        no timer per chunk (a hung engine is caught by the health checks, which eject it)."""
        tried: set[Replica] = set(avoid)
        last_error: Exception | None = None
        blamed = False  # a 5xx ejects the first endpoint that sent it; a second is the request's doing
        for _ in range(self.retries + 1):
            replica = await self._acquire(model, ask, tried, last_error)
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await self._head(replica, kind, body, stream)
            except (EngineConnectionError, EngineStreamError) as exc:
                self.router.release(replica)
                self.router.outcome(replica, ok=False)
                replica.fail(f"the connection failed: {exc}")
                tried.add(replica)
                last_error = exc
                continue
            except TimeoutError:
                self.router.release(replica)
                raise _timed_out(model) from None
            except EngineError as exc:  # the engine answered 5xx (or refused our key)
                self.router.release(replica)
                self.router.outcome(replica, ok=False)
                if not blamed and self.router.has_spare(replica):  # the last one answers, if only errors
                    replica.fail(f"the engine answered an error: {exc.message}")
                    blamed = True
                tried.add(replica)
                last_error = exc
                continue
            except EngineUnavailableError as exc:  # the engine says it is busy: another may not be
                self.router.release(replica)
                tried.add(replica)
                last_error = exc
                continue
            except BaseException:  # a request error, or cancelled (the client left)
                self.router.release(replica)
                raise
            replica.breaker.succeeded()
            if not stream:  # a stream's outcome is its first token (ResumingStream, or assembled)
                self.router.outcome(replica, ok=True)
            return Lease(replica, reply, self.router)
        raise _failed(model, last_error)

    @staticmethod
    async def _head(replica: Replica, kind: Kind, body: dict[str, Any], stream: bool) -> EngineReply:
        """Send, and wait for the answer's head. If the endpoint is ejected meanwhile because it
        stopped answering, the wait is broken off as a failed connection (and goes elsewhere)."""
        send = asyncio.ensure_future(replica.backend.send(kind, body, stream=stream))
        replica.waiting.add(send)
        try:
            return await send
        except asyncio.CancelledError:
            if send.cancelled() and not asyncio.current_task().cancelling():  # not the client, not the timeout
                raise EngineConnectionError(f"endpoint {replica.name} was ejected while this request waited for it") from None
            raise
        finally:
            replica.waiting.discard(send)
            if not send.done():
                send.cancel()

    async def _acquire(self, model: str, ask: Ask, tried: set[Replica], last_error: Exception | None) -> Replica:
        try:
            return await self.router.acquire(model, ask, exclude=tried)
        except EngineUnavailableError:
            if not tried:
                raise
        try:
            return await self.router.acquire(model, ask)  # only failed ones left: one of them again
        except EngineUnavailableError:
            raise _failed(model, last_error) from None

    def stream(self, model: str, kind: Kind, body: dict[str, Any], lease: Lease, ask: Ask = Ask(),
               sent: float = 0.0) -> "ResumingStream":
        """``lease``'s stream (sent at ``sent``, monotonic), resumed on another endpoint if it
        breaks (where it can be)."""
        caps = lease.replica.backend.capabilities
        continuation = Continuation(kind, body, caps.resumes, caps.native_reasoning) if self.resume else None
        return ResumingStream(self, model, kind, lease, continuation, ask, sent or time.monotonic())

    async def count_tokens(self, model: str, kind: Kind, body: dict[str, Any]) -> int | None:
        """The prompt's size as one of the model's engines counts it; None when it cannot."""
        await self.router.wake(model)
        replica = self.router.peek(model)
        try:
            async with asyncio.timeout(self.timeout):
                return await replica.backend.count_tokens(kind, body)
        except TimeoutError:
            raise _timed_out(model) from None
        except (EngineConnectionError, EngineStreamError):
            raise EngineUnavailableError(f"model {model!r}: the engine connection failed while counting the prompt",
                                         retry_after=2, fix="retry after the Retry-After delay") from None


class ResumingStream:
    """One stream to the client over as many engine connections as it takes.

    Events pass through as the engine sent them. When the engine's connection breaks, or the
    stream ends without ``[DONE]``, the endpoint is ejected and the stream goes on from where it
    broke on another one (``traffic/resume.py`` says what is resumed); the resumed leg's events
    are rewritten to continue the first leg's. When it cannot go on, the break reaches the relay,
    which ends the stream with an error event, as before."""

    def __init__(self, upstream: Upstream, model: str, kind: Kind, lease: Lease,
                 continuation: Continuation | None, ask: Ask, sent: float):
        self.upstream, self.model, self.kind, self.ask = upstream, model, kind, ask
        self.lease = lease
        self.sent = sent
        self.answered = False  # the first events came (the outcome is recorded then)
        self.continuation = continuation
        self.broken: set[Replica] = set()
        self.done = False

    @property
    def replica(self) -> Replica:
        return self.lease.replica

    async def aclose(self) -> None:
        await self.lease.aclose()

    async def events(self) -> AsyncIterator[list[bytes]]:
        while True:
            try:
                async with aclosing(self.lease.events()) as batches:
                    async for events in batches:
                        yield self._pass(events)
            except ConnectionError as exc:
                reason = f"the stream broke mid-way ({exc})"
            else:
                if self.done:
                    return
                reason = "the engine ended the stream early"
            self.lease.replica.fail(reason)
            self.upstream.router.outcome(self.lease.replica, ok=False)
            body = self.continuation.request() if self.continuation is not None else None
            if body is None:
                raise EngineStreamError(reason)
            self.broken.add(self.lease.replica)
            await self.lease.aclose()
            resumed = self.upstream.router.resumed
            resumed[self.model] = resumed.get(self.model, 0) + 1
            try:
                self.lease = await self.upstream.send(self.model, self.kind, body, stream=True,
                                                      avoid=frozenset(self.broken), ask=self.ask)
            except SeekstackError:
                raise EngineStreamError(f"{reason}, and no other endpoint could go on with it") from None

    def _pass(self, events: list[bytes]) -> list[bytes]:
        if not self.answered:
            self.answered = True
            self.upstream.router.outcome(self.lease.replica, ok=True, ttft=time.monotonic() - self.sent)
        continuation = self.continuation
        if continuation is not None and continuation.resumed:
            events = [e for e in map(continuation.adopt, events) if e is not None]
        for event in events:
            if continuation is not None:
                continuation.observe(event)
            if event.startswith(b"data: [DONE]") or event.startswith(b"data:[DONE]"):
                self.done = True
        return events


def _timed_out(model: str) -> EngineUnavailableError:
    return EngineUnavailableError(f"model {model!r} did not answer in time", retry_after=5,
                                  fix="retry later, or raise scheduler.timeout")


def _failed(model: str, last_error: Exception | None) -> SeekstackError:
    if isinstance(last_error, SeekstackError):
        return last_error
    return EngineUnavailableError(f"model {model!r}: the engine connection failed ({last_error})",
                                  retry_after=2, fix="retry after the Retry-After delay")
