"""The registry of deployments: the one place that says what this gateway can serve, and where.

model alias → deployments (name, version, weight, engine kind, capabilities, where they come
from) → endpoints (an engine's address, its state — starting / ready / draining / ejected —
its health and load). Every reader goes through it: routing, ``/v1/models``, the Ollama
routes, readiness and ``/healthz``, metrics and ``seekstack ps``.

The registry owns nothing it lists: *sources* fill it. A source is anything that can say
which deployments it has right now and keep their endpoints' states current:

- :class:`~seekstack.supervisor.Supervisor` — engines this host launches (``local``),
  engines on other hosts named in the config (``static``), and engines found by DNS
  (``discovered``: ``engine.discover``, :mod:`seekstack.registry.discovery`, e.g. a
  Kubernetes headless Service), each heartbeated the same way.

Another source (a Kubernetes EndpointSlice watch, say) implements :class:`Source`.

Reads are cheap (a dict lookup and a list): the router asks on every request.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from ..traffic.policies import point_of

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..engines.capabilities import Capabilities
    from ..supervisor import Replica

# What a model alias is, as a whole, from its endpoints
MODEL_READY, MODEL_STARTING, MODEL_DOWN, MODEL_UNLOADED = "ready", "starting", "down", "unloaded"


@dataclass(eq=False)
class Deployment:
    """One way of serving a model alias: a model build on an engine kind, with its endpoints."""

    alias: str                   # what clients send in `model`
    name: str                    # unique per alias (several deployments of one alias: canary, blue-green)
    model: "ModelConfig"         # how it is configured
    source: str                  # local | static | discovered
    endpoints: list["Replica"] = field(default_factory=list)
    weight: int = 100            # share of the alias's traffic among its ready deployments
    version: str | None = None   # the store version (NAME@VERSION), when it comes from the store

    def __post_init__(self) -> None:
        for endpoint in self.endpoints:
            endpoint.deployment = self.name  # its queue (traffic/router.py)

    @property
    def engine(self) -> str:
        return self.model.engine.kind

    @property
    def capabilities(self) -> "Capabilities | None":
        return self.endpoints[0].backend.capabilities if self.endpoints else None

    @property
    def concurrency(self) -> int | None:
        """Requests one endpoint runs at once (None: no limit): the model's (:attr:`ModelConfig.concurrency`)."""
        return self.model.concurrency

    def routable(self) -> list["Replica"]:
        return [e for e in self.endpoints if e.routable]

    @property
    def state(self) -> str:
        states = {e.state for e in self.endpoints}
        if any(e.routable for e in self.endpoints):
            return MODEL_READY
        if states and states <= {"unloaded"}:
            return MODEL_UNLOADED
        if states & {"starting", "restarting"}:
            return MODEL_STARTING
        return MODEL_DOWN

    def describe(self) -> dict[str, Any]:
        return {"alias": self.alias, "name": self.name, "version": self.version, "weight": self.weight,
                "engine": self.engine, "source": self.source, "state": self.state,
                "endpoints": {"total": len(self.endpoints), "ready": len(self.routable())}}


class Source(Protocol):
    """Something that fills the registry: the local supervisor, static endpoints, a discovery."""

    def deployments(self) -> Iterable[Deployment]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Registry:
    def __init__(self, sources: Iterable[Source] = ()):
        self.sources: list[Source] = list(sources)
        self._turn = itertools.count()

    # ------------------------------------------------------------ reads
    def deployments(self, alias: str | None = None) -> list[Deployment]:
        found = [d for source in self.sources for d in source.deployments()]
        return found if alias is None else [d for d in found if d.alias == alias]

    def aliases(self) -> list[str]:
        """Every model alias served, in the order they were configured."""
        return list(dict.fromkeys(d.alias for d in self.deployments()))

    def endpoints(self, alias: str | None = None) -> list["Replica"]:
        return [e for d in self.deployments(alias) for e in d.endpoints]

    def model(self, alias: str) -> "ModelConfig | None":
        """The configuration of the alias's first deployment (its name, context, family)."""
        found = self.deployments(alias)
        return found[0].model if found else None

    def capabilities(self, alias: str) -> "Capabilities | None":
        return next((d.capabilities for d in self.deployments(alias) if d.capabilities is not None), None)

    def state(self, alias: str) -> str:
        states = [d.state for d in self.deployments(alias)]
        for state in (MODEL_READY, MODEL_STARTING, MODEL_DOWN, MODEL_UNLOADED):
            if state in states:
                return state
        return MODEL_DOWN

    def models(self) -> dict[str, dict[str, Any]]:
        """Per alias: its state and how many of its endpoints are ready (``/healthz``, metrics)."""
        out: dict[str, dict[str, Any]] = {}
        for alias in self.aliases():
            deployments = self.deployments(alias)
            out[alias] = {"state": self.state(alias),
                          "endpoints": sum(len(d.endpoints) for d in deployments),
                          "ready_endpoints": sum(len(d.routable()) for d in deployments),
                          "deployments": [d.describe() for d in deployments]}
        return out

    def can_serve(self) -> bool:
        """Whether any model has a ready endpoint: what a load balancer needs to know of a gateway.
        One model being down is that model's state (``/healthz``), not the gateway's."""
        return any(e.routable for e in self.endpoints())

    # ------------------------------------------------------------ routing
    def choose(self, alias: str, exclude: "Iterable[Replica]" = (), stick: bytes | None = None) -> Deployment | None:
        """One of the alias's deployments with a routable endpoint (not in ``exclude``), by weight.

        With ``stick`` (a user or session), the same one every time while the weights stay: a
        canary's users stay on the canary."""
        exclude = exclude if isinstance(exclude, (set, frozenset)) else set(exclude)
        ready = [d for d in self.deployments(alias) if d.weight > 0 and any(e not in exclude for e in d.routable())]
        if len(ready) <= 1:
            return ready[0] if ready else None
        total = sum(d.weight for d in ready)
        if stick is not None:
            point = point_of(stick) % total
        else:
            point = next(self._turn) * 7919 % total  # a deterministic spread over the weights
        for deployment in ready:
            if point < deployment.weight:
                return deployment
            point -= deployment.weight
        return ready[-1]  # pragma: no cover (point < total)
