"""The bounded queue in front of a deployment.

Each endpoint runs at most ``queue.concurrency`` requests at once (by default the engine's
``slots``: what it decodes together). A request that finds every endpoint full waits here, in
order of priority class (``interactive`` before ``batch``), then of arrival. The queue holds at
most ``max_waiting`` requests, each for at most ``max_wait`` seconds; past either bound the
request is refused at once with 429 and ``Retry-After`` — never an unbounded wait inside an
engine.

A freed slot is handed to the head of the queue: a request arriving meanwhile does not jump it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

from ..errors import OverloadedError

PRIORITIES = {"interactive": 0, "batch": 1}


class WaitQueue:
    def __init__(self, name: str, max_waiting: int, max_wait: float):
        self.name = name
        self.max_waiting = max_waiting
        self.max_wait = max_wait
        self._heap: list[tuple[int, int, asyncio.Future]] = []
        self._seq = itertools.count()
        self.handoffs = 0          # slots freed for waiters that have not taken them yet
        self.rejected = {"full": 0, "timeout": 0}
        self.waited_total = 0

    @property
    def waiting(self) -> int:
        return len(self._heap)

    def must_wait(self) -> bool:
        """Whether a new request has to queue even if a slot looks free (others are ahead)."""
        return bool(self._heap) or self.handoffs > 0

    async def wait(self, priority: int, seq: int | None = None) -> int:
        """Wait for a freed slot; return this waiter's place (to keep it when it must wait again).
        Raises :class:`OverloadedError` when the queue is full or the wait too long."""
        if seq is None and len(self._heap) >= self.max_waiting:
            self.rejected["full"] += 1
            raise OverloadedError(f"model {self.name!r} is at capacity: {len(self._heap)} requests are already waiting",
                                  retry_after=self._retry_after(), fix="retry after the Retry-After delay, or add replicas")
        seq = next(self._seq) if seq is None else seq
        waiter = asyncio.get_running_loop().create_future()
        entry = (priority, seq, waiter)
        heapq.heappush(self._heap, entry)
        self.waited_total += 1
        try:
            async with asyncio.timeout(self.max_wait):
                await waiter
        except TimeoutError:
            self._forget(entry)
            self.rejected["timeout"] += 1
            raise OverloadedError(f"model {self.name!r} is at capacity: no slot came free within {self.max_wait:g} s",
                                  retry_after=self._retry_after(),
                                  fix="retry after the Retry-After delay, or add replicas") from None
        except BaseException:
            self._forget(entry)
            raise
        self.handoffs -= 1
        return seq

    def _forget(self, entry: tuple[int, int, asyncio.Future]) -> None:
        waiter = entry[2]
        if waiter.done() and not waiter.cancelled():
            self.handoffs -= 1   # woken as it gave up: pass the slot on
            self.wake()
        elif entry in self._heap:
            self._heap.remove(entry)
            heapq.heapify(self._heap)

    def wake(self) -> None:
        """A slot came free: hand it to the first waiter."""
        while self._heap:
            _, _, waiter = heapq.heappop(self._heap)
            if not waiter.done():
                self.handoffs += 1
                waiter.set_result(None)
                return

    def _retry_after(self) -> int:
        return max(1, math.ceil(min(self.max_wait, 1 + len(self._heap) / 8)))
