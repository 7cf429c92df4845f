"""Per client address, before authentication: rate limits, and refusals that cannot flood the audit log.

Anyone who reaches the port can send requests without a key, and every refusal is audited
(fail-closed). So that this cannot fill the audit store or guess keys:

- each source (the client address uvicorn reports — the real client behind a trusted
  proxy) may be refused ``audited_failures`` times a minute with one audit record each;
  past that its refusals are counted and written as one ``refusals`` record per source and
  minute;
- past ``failures_per_minute`` refusals, a source's unauthenticated requests get 429 with
  Retry-After (a valid key is still served: a neighbour behind the same NAT is not locked out);
- ``requests_per_second`` (off by default) caps every request of a source, before its key is checked.

Windows slide (six 10-second buckets). An IPv6 source is its /64 (one host can hold the
whole prefix), the table of sources is bounded (``MAX_SOURCES``, the rest share one row), and
all sources together get at most ``AUDITED_PER_MINUTE`` records of single refusals: a spray
of addresses cannot fill the audit store either.
"""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass, field

BUCKET = 10.0
BUCKETS = 6
MAX_SOURCES = 10_000
OVERFLOW = "other"
AUDITED_PER_MINUTE = 600  # single-refusal records from all sources together


def source_of(ip: str | None) -> str:
    """The unit limits apply to: an IPv4 address, or an IPv6 address's /64."""
    if not ip or ":" not in ip:
        return ip or OVERFLOW
    try:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    except ValueError:
        return ip


@dataclass
class _Source:
    failures: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    stamps: list[int] = field(default_factory=lambda: [-1] * BUCKETS)
    suppressed: int = 0
    tokens: float = 0.0
    refilled: float = 0.0

    def add_failure(self, bucket: int) -> int:
        slot = bucket % BUCKETS
        if self.stamps[slot] != bucket:
            self.stamps[slot], self.failures[slot] = bucket, 0
        self.failures[slot] += 1
        return self.recent(bucket)

    def recent(self, bucket: int) -> int:
        return sum(n for n, stamp in zip(self.failures, self.stamps) if bucket - stamp < BUCKETS)


class SourceGuard:
    def __init__(self, failures_per_minute: int, audited_failures: int, requests_per_second: float | None):
        self.failures_per_minute = failures_per_minute
        self.audited_failures = audited_failures
        self.requests_per_second = requests_per_second
        self._sources: dict[str, _Source] = {}
        self._all = _Source()  # every source's single-refusal records together

    def _source(self, ip: str | None) -> _Source:
        ip = source_of(ip)
        source = self._sources.get(ip)
        if source is None:
            if len(self._sources) >= MAX_SOURCES:
                ip = OVERFLOW
                source = self._sources.get(ip)
            if source is None:
                source = self._sources[ip] = _Source()
        return source

    def admit(self, ip: str | None, now: float | None = None) -> float | None:
        """None to go on, else the seconds to wait: the source is over ``requests_per_second``."""
        if self.requests_per_second is None:
            return None
        now = time.monotonic() if now is None else now
        source = self._source(ip)
        burst = max(self.requests_per_second, 1.0)
        source.tokens = min(burst, source.tokens + (now - source.refilled) * self.requests_per_second) \
            if source.refilled else burst
        source.refilled = now
        if source.tokens < 1:
            return (1 - source.tokens) / self.requests_per_second
        source.tokens -= 1
        return None

    def blocked(self, ip: str | None, now: float | None = None) -> int | None:
        """Seconds until the source may try without a key again, or None when it may now."""
        source = self._sources.get(source_of(ip))
        if source is None:
            return None
        now = time.time() if now is None else now
        if source.recent(int(now // BUCKET)) < self.failures_per_minute:
            return None
        return max(1, math.ceil(BUCKET * BUCKETS - now % BUCKET))

    def refused(self, ip: str | None, now: float | None = None) -> bool:
        """Count one refusal before authentication; True when it gets its own audit record."""
        source = self._source(ip)
        bucket = int((time.time() if now is None else now) // BUCKET)
        recent = source.add_failure(bucket)
        if recent <= self.audited_failures and self._all.recent(bucket) < AUDITED_PER_MINUTE:
            self._all.add_failure(bucket)
            return True
        source.suppressed += 1
        return False

    def summaries(self) -> list[dict]:
        """The refusals not audited one by one since the last call, one record per source; idle sources are dropped."""
        records, bucket = [], int(time.time() // BUCKET)
        for ip, source in list(self._sources.items()):
            if source.suppressed:
                records.append({"event": "refusals", "decision": "deny", "ip": ip, "count": source.suppressed,
                                "reason": "past audit.per_source_failures a minute: counted, not recorded one by one"})
                source.suppressed = 0
            elif source.recent(bucket) == 0 and (self.requests_per_second is None
                                                 or time.monotonic() - source.refilled > BUCKET):
                del self._sources[ip]
        return records
