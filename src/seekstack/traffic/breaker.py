"""A circuit breaker per endpoint: the health of an engine as the request path and the active
checks see it.

- **closed** — the endpoint takes traffic.
- **open** (the endpoint is *ejected*) — a failure took it out: a refused or reset connection, a
  5xx, a health check that got no answer twice in a row. Nothing is sent to it for
  ``eject_for`` seconds (doubled on every ejection in a row, up to ``eject_max``).
- **half-open** — the open period is over and a health check passed: the endpoint is on
  probation. It takes traffic again; the first request it answers closes the breaker (so do
  four more passing health checks, when no request comes), and a failure opens it again at
  once, for twice as long (the streak of ejections is forgotten only when a request succeeds). (It is not limited to one request at a
  time: during a failover its traffic may be all the traffic there is.)

The breaker only says; the router (``Replica.routable``) and the supervisor's checks act on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
PROBES_TO_CLOSE = 4  # without traffic, this many passing health checks (1 s by default) close a half-open breaker


@dataclass(eq=False)
class Breaker:
    eject_for: float = 1.0      # first open period, seconds
    eject_max: float = 30.0     # longest open period
    state: str = CLOSED
    reason: str = ""
    ejections: int = 0          # times it opened, ever (a metric)
    opened_at: float = 0.0      # monotonic, when it last opened
    ejected_at: float = 0.0     # the same instant as Unix time (for operators and other processes)
    _streak: int = 0            # ejections in a row without a success between them
    _until: float = 0.0
    _passes: int = 0            # health checks passed in a row while half-open

    @property
    def allows(self) -> bool:
        """Whether requests may go to the endpoint now."""
        return self.state != OPEN

    def trip(self, reason: str, now: float | None = None) -> bool:
        """A failure: eject the endpoint (again, for longer). True when it was taking traffic."""
        now = time.monotonic() if now is None else now
        was_serving = self.state != OPEN
        if was_serving:
            self._streak += 1
            self.ejections += 1
            self.opened_at, self.ejected_at = now, time.time()
            self._until = now + min(self.eject_for * 2 ** (self._streak - 1), self.eject_max)
            self.state, self.reason = OPEN, reason  # what took it out (later failures only confirm it)
        return was_serving

    def probe_passed(self, now: float | None = None) -> None:
        """A health check answered: an open breaker whose time is up goes half-open; a half-open
        one that no request tried closes after ``PROBES_TO_CLOSE`` checks in a row pass."""
        now = time.monotonic() if now is None else now
        if self.state == OPEN and now >= self._until:
            self.state, self._passes = HALF_OPEN, 0
        elif self.state == HALF_OPEN:
            self._passes += 1
            if self._passes >= PROBES_TO_CLOSE:
                self.state, self.reason = CLOSED, ""

    def succeeded(self) -> None:
        """A request got its answer's head from the endpoint: a half-open breaker closes."""
        if self.state == HALF_OPEN:
            self.state, self.reason, self._streak = CLOSED, "", 0

    def reset(self) -> None:
        """A new engine process: whatever the old one did is forgotten (the ejection count stays)."""
        self.state, self.reason, self._streak, self._until = CLOSED, "", 0, 0.0

    @property
    def reopens_in(self) -> float:
        return max(self._until - time.monotonic(), 0.0) if self.state == OPEN else 0.0

    def describe(self) -> dict:
        return {"state": self.state, "reason": self.reason, "ejections": self.ejections,
                "ejected_at": self.ejected_at or None, "reopens_in_s": round(self.reopens_in, 2)}
