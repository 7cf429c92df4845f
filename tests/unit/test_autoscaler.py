"""The autoscaler's rule (traffic/autoscaler.py): windows, thresholds, cooldowns, bounds, the
memory plan, and what it records."""

from __future__ import annotations

import asyncio

from seekstack.config import AutoscaleConfig, ModelConfig, SchedulerConfig
from seekstack.engines.base import ExternalEngine
from seekstack.engines.http import EngineHTTP
from seekstack.engines.registry import engine_kind
from seekstack.registry import Deployment, Registry
from seekstack.supervisor import READY, STARTING, Replica
from seekstack.traffic.autoscaler import Autoscaler, Rule, utilization
from seekstack.traffic.router import Router

RULE = Rule.of(AutoscaleConfig(min_replicas=1, max_replicas=3, window=10, sample_every=1, up_cooldown=5,
                               down_cooldown=20))


class Local:
    """The supervisor's part the autoscaler uses: a deployment it can grow and shrink."""

    def __init__(self, replicas: int = 1):
        self.model = ModelConfig(name="m", source="embedded", slots=4, replicas=replicas)
        self.kind, self.http = engine_kind("vllm"), EngineHTTP(read_timeout=5)
        self.endpoints = [self._endpoint(i) for i in range(replicas)]
        self.calls: list[int] = []
        self.demand: int | None = None  # requests in flight, spread over the replicas at each sample

    def _endpoint(self, index: int) -> Replica:
        engine = ExternalEngine(f"http://127.0.0.1:{9 + index}")
        return Replica(self.model, index, engine, self.kind.backend(self.http, engine.base_url, self.model), state=READY)

    def deployments(self):
        return [Deployment(alias="m", name="m", model=self.model, source="local", endpoints=self.endpoints)]

    async def scale(self, model: str, replicas: int) -> None:
        self.calls.append(replicas)
        while len(self.endpoints) < replicas:
            self.endpoints.append(self._endpoint(len(self.endpoints)))
        del self.endpoints[replicas:]

    def load(self, in_flight: int) -> None:
        """From now on, ``in_flight`` requests spread over the replicas there are."""
        self.demand = in_flight
        self.spread()

    def spread(self) -> None:
        if self.demand is None:
            return
        in_flight = self.demand
        for i, endpoint in enumerate(self.endpoints):
            endpoint.outstanding = in_flight // len(self.endpoints) + (i < in_flight % len(self.endpoints))


def scaler(local: Local, fits=lambda m, n: None, audit=None, rule: Rule = RULE) -> Autoscaler:
    registry = Registry([local])
    return Autoscaler(registry, Router(registry, SchedulerConfig()), local, lambda: {"m": rule}, fits, audit)


def run(auto: Autoscaler, seconds: int, start: float = 0.0) -> list:
    decisions = []
    for t in range(seconds):
        auto.actuator.spread()
        for decision in auto.step(now=start + t):
            asyncio.run(auto.apply(decision))
            decisions.append(decision)
    return decisions


def test_utilization_is_saturation_slots_with_the_queue_or_kv_use():
    local = Local(2)
    deployment = local.deployments()[0]
    local.load(4)
    assert utilization(deployment, waiting=0) == 0.5  # 4 of 8 slots
    assert utilization(deployment, waiting=8) == 1.5  # the queue counts: more demand than slots
    from seekstack.engines.backend import Load
    local.endpoints[0].load = Load(kv_use=0.95)
    assert utilization(deployment, waiting=0) == 0.95  # a full KV cache saturates with free slots


def test_a_sustained_load_adds_replicas_one_cooldown_apart_up_to_max_then_they_come_off():
    local, records = Local(1), []

    async def audit(record):
        records.append(record)

    auto = scaler(local, audit=audit)
    local.load(8)  # twice what one replica's 4 slots take, then 100 % of two
    ups = run(auto, 30)
    assert [(d.direction, d.replicas_from, d.replicas_to) for d in ups] == [("up", 1, 2), ("up", 2, 3)]
    assert ups[0].at < ups[1].at and local.calls == [2, 3]
    first_up = records[0]
    assert first_up["event"] == "autoscale" and first_up["direction"] == "up" and first_up["model"] == "m"
    # not before a whole window was seen, and the second one only after the cooldown
    local.load(24)  # still saturated at 3 replicas: max reached, nothing more
    assert run(auto, 20, start=30) == []
    local.load(0)  # the load goes: one replica comes off per down_cooldown, never below min
    downs = run(auto, 80, start=50)
    assert [(d.direction, d.replicas_to) for d in downs] == [("down", 2), ("down", 1)]
    assert len(local.endpoints) == 1 and auto.describe()[0]["decisions"] == {"up": 2, "down": 2, "held": 0}


def test_a_short_burst_does_not_scale_and_a_starting_replica_is_waited_for():
    local = Local(1)
    auto = scaler(local)
    local.load(4)
    assert run(auto, 3) == []  # less than a window of it
    local.endpoints.append(local._endpoint(1))
    local.endpoints[1].state = STARTING  # added, still loading its model
    local.demand = None
    local.endpoints[0].outstanding, local.endpoints[1].outstanding = 4, 0
    assert run(auto, 30, start=3) == []  # one is still starting: its capacity is on the way


def test_the_memory_plan_holds_a_scale_up_and_says_why_once_a_window():
    local, records = Local(2), []

    async def audit(record):
        records.append(record)

    auto = scaler(local, fits=lambda m, n: f"{n} replicas of {m} need more than the budget" if n > 2 else None,
                  audit=audit)
    local.load(8)
    decisions = run(auto, 25)
    assert [d.direction for d in decisions] == ["held", "held"]  # at 10 s and again a window later
    assert len(local.endpoints) == 2 and local.calls == []
    assert records[0]["decision"] == "deny" and "need more than the budget" in records[0]["reason"]


def test_bounds_set_at_run_time_apply_and_a_bad_pair_is_refused():
    import pytest

    from seekstack.errors import InvalidRequestError, ModelNotFoundError

    local = Local(1)
    auto = scaler(local)
    assert auto.set_bounds("m", 2, None).min_replicas == 2
    assert [d.replicas_to for d in run(auto, 2)] == [2]  # below the new minimum: up at once
    with pytest.raises(InvalidRequestError, match="not 1 <= min <= max"):
        auto.set_bounds("m", 5, 3)
    with pytest.raises(ModelNotFoundError):
        auto.set_bounds("other", 1, 2)


def test_the_rule_is_data():
    assert RULE.to_json() == {"min_replicas": 1, "max_replicas": 3, "scale_up_at": 0.85, "scale_down_at": 0.3,
                              "window": 10.0, "up_cooldown": 5.0, "down_cooldown": 20.0, "sample_every": 1.0,
                              "metric": "saturation"}
