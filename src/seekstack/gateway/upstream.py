"""Send a request to one of a model's replicas through its Backend: pick, send, retry a failed
connection once (on another replica when there is one).

The dialect — paths, headers, the engine's errors, SSE framing — is the Backend's
(``engines/backend.py``); this module only chooses and retries.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator

from ..engines.backend import EngineReply, Kind
from ..engines.http import EngineConnectionError, EngineStreamError
from ..errors import EngineError, EngineUnavailableError
from ..router import Router
from ..supervisor import Replica


@dataclass(eq=False)
class Lease:
    """A replica held for one request; ``aclose()`` exactly once."""

    replica: Replica
    reply: EngineReply
    _released: bool = False

    @property
    def content(self) -> bytes:
        return self.reply.content

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.replica.outstanding -= 1

    async def aclose(self) -> None:
        try:
            self.reply.close()
        finally:
            self.release()

    def events(self) -> AsyncIterator[list[bytes]]:
        return self.reply.events()


class Upstream:
    def __init__(self, router: Router, retries: int = 1, timeout: float = 600.0):
        self.router = router
        self.retries = retries
        self.timeout = timeout

    async def send(self, model: str, kind: Kind, body: dict[str, Any], *, stream: bool = False,
                   avoid: frozenset[Replica] = frozenset()) -> Lease:
        """Send to a replica (not one in ``avoid`` while another is left); return a Lease
        (stream: only the head has been read).

        The wait for the response head is bounded by ``scheduler.timeout``; a stream then has
        no timer per chunk (a hung engine is caught by the supervisor's heartbeat instead)."""
        tried: set[Replica] = set(avoid)
        last_error: Exception | None = None
        for _ in range(self.retries + 1):
            replica = self._pick(model, tried)
            replica.outstanding += 1
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await replica.backend.send(kind, body, stream=stream)
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
            except BaseException:  # an engine error, or cancelled (the client left)
                replica.outstanding -= 1
                raise
            return Lease(replica, reply)
        raise EngineUnavailableError(f"model {model!r}: the engine connection failed ({last_error})",
                                     retry_after=2, fix="retry after the Retry-After delay")

    def _pick(self, model: str, tried: set[Replica]) -> Replica:
        try:
            return self.router.pick(model, exclude=tried)
        except EngineUnavailableError:
            if not tried:
                raise
            return self.router.pick(model)  # only failed ones left: retry one of them once

    async def count_tokens(self, model: str, kind: Kind, body: dict[str, Any]) -> int | None:
        """The prompt's size as one of the model's engines counts it; None when it cannot."""
        replica = self._pick(model, set())
        try:
            async with asyncio.timeout(self.timeout):
                return await replica.backend.count_tokens(kind, body)
        except TimeoutError:
            raise _timed_out(model) from None
        except (EngineConnectionError, EngineStreamError):
            raise EngineUnavailableError(f"model {model!r}: the engine connection failed while counting the prompt",
                                         retry_after=2, fix="retry after the Retry-After delay") from None


def _timed_out(model: str) -> EngineUnavailableError:
    return EngineUnavailableError(f"model {model!r} did not answer in time", retry_after=5,
                                  fix="retry later, or raise scheduler.timeout")
