"""Choose an endpoint for each request from the registry: round-robin or least-outstanding
over the ready endpoints of one of the model's deployments (chosen by weight)."""

from __future__ import annotations

import itertools

from .errors import EngineUnavailableError
from .registry import MODEL_UNLOADED, Registry
from .supervisor import Replica


class Router:
    def __init__(self, registry: Registry, policy: str = "least-outstanding"):
        self.registry = registry
        self.policy = policy
        self._turn = itertools.count()

    def pick(self, model: str, exclude: frozenset[Replica] | set[Replica] = frozenset()) -> Replica:
        candidates = [r for r in self.registry.candidates(model) if r not in exclude]
        if not candidates and self.registry.state(model) == MODEL_UNLOADED:
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
