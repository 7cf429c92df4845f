"""What a deployment's requests came to, lately: answered or failed, and how fast the first token
came. A rollout compares its canary's with its baseline's over the same minutes."""

from __future__ import annotations

import collections
import time

KEEP = 3600.0  # seconds of outcomes kept


class Outcomes:
    def __init__(self) -> None:
        self._events: collections.deque[tuple[float, bool, float | None]] = collections.deque()

    def add(self, ok: bool, ttft: float | None = None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._events.append((now, ok, ttft))
        while self._events and self._events[0][0] < now - KEEP:
            self._events.popleft()

    def last(self) -> float:
        """When the latest outcome came (monotonic); 0.0 when none has."""
        return self._events[-1][0] if self._events else 0.0

    def since(self, start: float) -> tuple[int, int, list[float]]:
        """(requests, failed, first-token times) since ``start`` (monotonic)."""
        requests = failed = 0
        ttfts = []
        for at, ok, ttft in reversed(self._events):
            if at < start:
                break
            requests += 1
            failed += not ok
            if ttft is not None:
                ttfts.append(ttft)
        return requests, failed, ttfts


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(int(0.99 * len(ordered)), len(ordered) - 1)]
