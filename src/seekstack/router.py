"""Choose a replica for each request: round-robin or least-outstanding over routable replicas."""

from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import Iterator

from .errors import EngineUnavailableError
from .supervisor import Replica, Supervisor


class Router:
    def __init__(self, supervisor: Supervisor, policy: str = "least-outstanding"):
        self.supervisor = supervisor
        self.policy = policy
        self._turn = itertools.count()

    def pick(self, model: str, exclude: frozenset[Replica] | set[Replica] = frozenset()) -> Replica:
        group = self.supervisor.replicas.get(model, [])
        candidates = [r for r in group if r.routable and r not in exclude]
        if not candidates and group and self.supervisor.unloaded(model):
            raise EngineUnavailableError(f"model {model!r} is unloaded", retry_after=30,
                                         fix=f"an operator loads it with `seekstack models load {model}`")
        if not candidates:
            raise EngineUnavailableError(
                f"no healthy replica of model {model!r} is available right now",
                fix="retry after the Retry-After delay; check `seekstack ps` and the engine logs",
                retry_after=2,
            )
        if self.policy == "round-robin":
            return candidates[next(self._turn) % len(candidates)]
        least = min(r.outstanding for r in candidates)
        tied = [r for r in candidates if r.outstanding == least]
        return tied[next(self._turn) % len(tied)]

    @contextmanager
    def track(self, replica: Replica) -> Iterator[Replica]:
        replica.outstanding += 1
        try:
            yield replica
        finally:
            replica.outstanding -= 1
