"""Routing policies: which of a deployment's routable endpoints takes a request.

Each policy is a small object with one method, ``choose(endpoints, key)``; ``scheduler.policy``
names one of :data:`POLICIES`. ``key`` is the request's affinity key (its session, else the
start of its prompt), or None.

- ``round-robin`` — in turn.
- ``least-outstanding`` — fewest requests this gateway has in flight on it (ties in turn).
- ``least-load`` — least loaded as the engine itself reports it (requests waiting and running in
  the engine, polled every heartbeat), never less than what this gateway has in flight there;
  KV-cache use breaks ties.
- ``prefix-affinity`` — consistent hashing of the affinity key, with bounded load: a repeated
  prefix (or session) goes to the same endpoint, whose KV cache holds it, unless that endpoint
  has more than ``1.25 ×`` its fair share in flight, then to the next one on the ring. Every
  gateway builds the same ring from the endpoints' names, so they agree without talking.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:
    from ..supervisor import Replica


class Policy(Protocol):
    name: str

    def choose(self, endpoints: Sequence["Replica"], key: bytes | None) -> "Replica": ...


class RoundRobin:
    name = "round-robin"

    def __init__(self) -> None:
        self._turn = itertools.count()

    def choose(self, endpoints: Sequence["Replica"], key: bytes | None) -> "Replica":
        return endpoints[next(self._turn) % len(endpoints)]


class LeastOutstanding:
    name = "least-outstanding"

    def __init__(self) -> None:
        self._turn = itertools.count()

    def choose(self, endpoints: Sequence["Replica"], key: bytes | None) -> "Replica":
        if len(endpoints) == 1:
            return endpoints[0]
        least = min(e.outstanding for e in endpoints)
        tied = [e for e in endpoints if e.outstanding == least]
        return tied[next(self._turn) % len(tied)]


def load_score(endpoint: "Replica") -> tuple[float, float]:
    """(requests on the endpoint, KV-cache use): the engine's own count, or this gateway's in
    flight when that is more (the engine's was read up to one heartbeat ago)."""
    load = endpoint.load
    engine = (load.queued or 0.0) + (load.running or 0.0)
    return max(engine, float(endpoint.outstanding)), load.kv_use or 0.0


class LeastLoad:
    name = "least-load"

    def __init__(self) -> None:
        self._turn = itertools.count()

    def choose(self, endpoints: Sequence["Replica"], key: bytes | None) -> "Replica":
        if len(endpoints) == 1:
            return endpoints[0]
        scores = [load_score(e) for e in endpoints]
        least = min(scores)
        tied = [e for e, s in zip(endpoints, scores) if s == least]
        return tied[next(self._turn) % len(tied)]


def point_of(data: bytes) -> int:
    """A stable 64-bit point for ``data`` (a ring position, a sticky choice): the same on every gateway."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class PrefixAffinity:
    """Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam, 2018)."""

    name = "prefix-affinity"
    points_per_endpoint = 64
    balance = 1.25  # no endpoint takes more than this times its fair share of what is in flight

    def __init__(self) -> None:
        self._rings: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
        self._fallback = LeastOutstanding()

    def _ring(self, endpoints: Sequence["Replica"]) -> tuple[list[int], list[int]]:
        names = tuple(e.name for e in endpoints)
        ring = self._rings.get(names)
        if ring is None:
            pairs = sorted((point_of(f"{name}#{i}".encode()), at) for at, name in enumerate(names)
                           for i in range(self.points_per_endpoint))
            ring = self._rings[names] = ([p for p, _ in pairs], [at for _, at in pairs])
            if len(self._rings) > 64:  # endpoint sets come and go: keep the recent ones
                self._rings.pop(next(iter(self._rings)))
        return ring

    def choose(self, endpoints: Sequence["Replica"], key: bytes | None) -> "Replica":
        if len(endpoints) == 1:
            return endpoints[0]
        if key is None:
            return self._fallback.choose(endpoints, None)
        points, owners = self._ring(endpoints)
        bound = math.ceil(self.balance * (sum(e.outstanding for e in endpoints) + 1) / len(endpoints))
        start = bisect.bisect(points, point_of(key))
        seen: set[int] = set()
        for i in range(len(points)):
            at = owners[(start + i) % len(points)]
            if at in seen:
                continue
            if endpoints[at].outstanding < bound:
                return endpoints[at]
            seen.add(at)
            if len(seen) == len(endpoints):
                break
        return self._fallback.choose(endpoints, None)  # pragma: no cover (the bound leaves room)


POLICIES = {policy.name: policy for policy in (RoundRobin, LeastOutstanding, LeastLoad, PrefixAffinity)}
