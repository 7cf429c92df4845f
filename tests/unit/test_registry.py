"""The registry of deployments: what it says about models, and how it spreads traffic."""

from __future__ import annotations

from seekstack.config import ModelConfig
from seekstack.engines.base import ExternalEngine
from seekstack.engines.http import EngineHTTP
from seekstack.engines.registry import engine_kind
from seekstack.registry import Deployment, Registry
from seekstack.supervisor import READY, STARTING, UNLOADED, Replica


class Listed:
    """A source with fixed deployments (what a discovery hands the registry)."""

    def __init__(self, *deployments: Deployment):
        self._deployments = list(deployments)

    def deployments(self):
        return self._deployments

    async def start(self):
        return None

    async def stop(self):
        return None


def deployment(alias: str, name: str, states: list[str], weight: int = 100, kind: str = "openai", **queue) -> Deployment:
    """A deployment of ``alias`` with one endpoint per state (2 slots each; ``queue``: its queue settings)."""
    engine_settings = {"kind": "openai", "url": "http://127.0.0.1:9/v1"} if kind == "openai" else \
        {"kind": kind, "endpoints": [f"http://127.0.0.1:{9 + i}" for i in range(len(states))]}
    model = ModelConfig(name=alias, engine=engine_settings, slots=2, queue=queue)
    backend_kind, http = engine_kind(kind), EngineHTTP(read_timeout=5)
    endpoints = []
    for index, state in enumerate(states):
        engine = ExternalEngine(f"http://127.0.0.1:{9 + index}")
        endpoints.append(Replica(model, index, engine, backend_kind.backend(http, engine.base_url, model), state=state))
    return Deployment(alias=alias, name=name, model=model, source="static", endpoints=endpoints, weight=weight)


def test_a_model_is_ready_while_one_endpoint_is_and_the_gateway_while_one_model_is():
    registry = Registry([Listed(deployment("a", "a", [READY, STARTING]), deployment("b", "b", [STARTING]),
                                deployment("c", "c", [UNLOADED]))])
    assert registry.aliases() == ["a", "b", "c"]
    assert {alias: s["state"] for alias, s in registry.models().items()} == {"a": "ready", "b": "starting", "c": "unloaded"}
    assert registry.models()["a"]["ready_endpoints"] == 1 and registry.models()["a"]["endpoints"] == 2
    assert registry.can_serve()
    assert registry.capabilities("a") is not None and registry.capabilities("nosuch") is None
    assert not Registry([Listed(deployment("b", "b", [STARTING]))]).can_serve()
