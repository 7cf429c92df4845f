"""The router: deployments by weight, endpoints with room by policy, the bounded queue, release."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from seekstack.config import SchedulerConfig
from seekstack.errors import EngineUnavailableError, OverloadedError
from seekstack.registry import Registry
from seekstack.supervisor import READY, STARTING, UNLOADED
from seekstack.traffic.router import Ask, Router, affinity_key

from test_registry import Listed, deployment


def run(coro):
    return asyncio.run(coro)


def test_traffic_is_split_between_an_alias_deployments_by_weight():
    stable, canary = deployment("m", "stable", [READY, READY], weight=90), deployment("m", "canary", [READY], weight=10)
    router = Router(Registry([Listed(stable, canary)]), SchedulerConfig(policy="round-robin"))

    async def picks(n):
        out = []
        for _ in range(n):
            endpoint = await router.acquire("m")
            router.release(endpoint)
            out.append("canary" if endpoint in canary.endpoints else "stable")
        return Counter(out)

    assert run(picks(1000)) == {"stable": 900, "canary": 100}
    # a deployment with no ready endpoint takes none; weight 0 takes none
    for endpoint in canary.endpoints:
        endpoint.state = STARTING
    assert run(picks(50)) == {"stable": 50}
    canary.endpoints[0].state, canary.weight = READY, 0
    assert run(picks(50)) == {"stable": 50}


def test_an_unloaded_model_says_how_to_load_it():
    router = Router(Registry([Listed(deployment("c", "c", [UNLOADED]))]), SchedulerConfig())
    with pytest.raises(EngineUnavailableError, match="unloaded") as refused:
        run(router.acquire("c"))
    assert "seekstack models load c" in refused.value.fix


def test_an_ejected_endpoint_takes_nothing_until_a_health_check_passes_after_its_time():
    d = deployment("m", "m", [READY, READY])
    router = Router(Registry([Listed(d)]), SchedulerConfig(policy="round-robin"))
    bad, good = d.endpoints
    bad.fail("connection refused")
    assert bad.status == "ejected" and bad.describe()["breaker"]["reason"] == "connection refused"

    async def go():
        return [await router.acquire("m") for _ in range(4)]

    assert set(run(go())) == {good}
    bad.breaker.probe_passed(now=bad.breaker.opened_at + 0.5)  # a health check passes before its time: still out
    assert bad.status == "ejected" and not bad.routable
    bad.breaker.probe_passed(now=bad.breaker.opened_at + 1.0)  # its time (1 s) is up: on probation
    assert bad.status == "probing" and bad.routable
    bad.fail("connection reset")  # a failure on probation: out again, for twice as long
    assert bad.status == "ejected" and bad.breaker.reopens_in > 1.5
    bad.breaker.probe_passed(now=bad.breaker.opened_at + 2.0)
    bad.breaker.succeeded()  # it answered a request: back in full
    assert bad.status == "ready" and bad.breaker.ejections == 2


def test_concurrency_is_bounded_per_endpoint_and_the_rest_waits_in_priority_order():
    d = deployment("m", "m", [READY], kind="vllm", max_waiting=3, max_wait=5)  # slots=2: two run at once
    router = Router(Registry([Listed(d)]), SchedulerConfig())
    order: list[str] = []

    async def go():
        first, second = await router.acquire("m"), await router.acquire("m")
        assert first is second and first.outstanding == 2  # one endpoint, both of its slots

        async def waiter(name: str, priority: int):
            endpoint = await router.acquire("m", Ask(priority=priority))
            order.append(name)
            return endpoint

        tasks = [asyncio.create_task(waiter("batch", 1)), asyncio.create_task(waiter("interactive-1", 0))]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(waiter("interactive-2", 0)))
        await asyncio.sleep(0.01)
        assert router.waiting() == {"m": 3} and order == []
        # the queue is full: the next is refused at once, not kept waiting
        with pytest.raises(OverloadedError) as refused:
            await router.acquire("m")
        assert refused.value.status == 429 and int(refused.value.headers()["Retry-After"]) >= 1
        for _ in range(3):
            router.release(first)
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        return order

    assert run(go()) == ["interactive-1", "interactive-2", "batch"]


def test_a_request_that_waits_too_long_is_refused_with_429():
    d = deployment("m", "m", [READY], kind="vllm", max_waiting=8, max_wait=0.05)
    router = Router(Registry([Listed(d)]), SchedulerConfig())

    async def go():
        await router.acquire("m")
        await router.acquire("m")
        with pytest.raises(OverloadedError, match="within 0.05 s"):
            await router.acquire("m")
        return router.queues["m"].rejected

    assert run(go()) == {"full": 0, "timeout": 1}


def test_an_openai_server_has_no_gateway_limit_unless_one_is_set():
    assert deployment("m", "m", [READY]).concurrency is None
    assert deployment("m", "m", [READY], kind="vllm").concurrency == 2
    assert deployment("m", "m", [READY], concurrency=7).concurrency == 7


def test_prefix_affinity_sends_one_prefix_to_one_endpoint_and_spreads_many():
    d = deployment("m", "m", [READY] * 3)
    router = Router(Registry([Listed(d)]), SchedulerConfig(policy="prefix-affinity", prefix_bytes=64))
    system = {"role": "system", "content": "You are the bank's assistant. " * 4}

    async def endpoint_for(body, session=None):
        endpoint = await router.acquire("m", router.ask(body, "k", "t", session))
        router.release(endpoint)
        return endpoint

    async def go():
        same = {await endpoint_for({"messages": [system, {"role": "user", "content": f"question {i}"}]})
                for i in range(20)}
        spread = Counter([await endpoint_for({"messages": [{"role": "user", "content": f"topic {i} " * 30}]})
                          for i in range(300)])
        sessions = {await endpoint_for({"messages": [{"role": "user", "content": f"turn {i}"}]}, "s-42")
                    for i in range(10)}
        return same, spread, sessions

    same, spread, sessions = run(go())
    assert len(same) == 1  # the shared system prompt decides
    assert len(spread) == 3 and min(spread.values()) > 50, spread  # distinct prefixes spread over all three
    assert len(sessions) == 1


def test_prefix_affinity_bounds_the_load_it_puts_on_one_endpoint():
    d = deployment("m", "m", [READY] * 2)
    router = Router(Registry([Listed(d)]), SchedulerConfig(policy="prefix-affinity"))
    ask = router.ask({"messages": [{"role": "user", "content": "the same"}]}, "k", "t")

    async def go():
        return Counter([await router.acquire("m", ask) for _ in range(10)])  # all held: none released

    held = run(go())
    # not 10 on one: never more than ceil(1.25 x its share) of what is in flight, counting itself
    assert sorted(held.values()) == [3, 7]


def test_the_affinity_key_is_the_start_of_the_prompt_or_the_session():
    body = {"messages": [{"role": "system", "content": "x" * 100}, {"role": "user", "content": "y"}]}
    assert affinity_key(body, None, 32) == b"system\0" + b"x" * 25
    assert affinity_key({"prompt": "abc"}, None, 32) == b"abc"
    assert affinity_key(body, "s1", 32) == b"session:s1"


def test_priority_classes_come_from_the_key_then_the_team():
    settings = SchedulerConfig(priorities={"default": "interactive", "teams": {"etl": "batch"}, "keys": {"k1": "interactive"}})
    router = Router(Registry([]), settings)
    assert router.ask({}, "k9", "etl").priority == 1
    assert router.ask({}, "k1", "etl").priority == 0
    assert router.ask({}, "k9", "web").priority == 0


def test_least_load_reads_the_engines_queue():
    from seekstack.engines.backend import Load

    d = deployment("m", "m", [READY] * 2)
    router = Router(Registry([Listed(d)]), SchedulerConfig(policy="least-load"))
    busy, idle = d.endpoints
    busy.load, idle.load = Load(queued=5, running=4, kv_use=0.9), Load(queued=0, running=1, kv_use=0.1)

    async def go():
        return [await router.acquire("m") for _ in range(3)]

    # the idle one until what this gateway sent there outweighs what the other engine reports
    assert run(go()) == [idle, idle, idle]


def test_an_endpoint_on_probation_that_no_request_tries_comes_back_after_four_passing_checks():
    d = deployment("m", "m", [READY])
    endpoint = d.endpoints[0]
    endpoint.fail("reset")
    at = endpoint.breaker.opened_at + 1.0
    endpoint.breaker.probe_passed(now=at)
    for i in range(3):
        endpoint.breaker.probe_passed(now=at + i)
        assert endpoint.status == "probing"
    endpoint.breaker.probe_passed(now=at + 4)
    assert endpoint.status == "ready"


def test_a_caller_stays_on_one_deployment_while_the_weights_stay():
    stable, canary = deployment("m", "m", [READY], weight=9900), deployment("m", "m@2", [READY], weight=100)
    router = Router(Registry([Listed(stable, canary)]), SchedulerConfig())

    async def where(body, key_id="k", session=None):
        endpoint = await router.acquire("m", router.ask(body, key_id, "t", session))
        router.release(endpoint)
        return "canary" if endpoint in canary.endpoints else "stable"

    async def go():
        same_user = {await where({"user": "alice"}) for _ in range(50)}
        users = Counter([await where({"user": f"user-{i}"}) for i in range(5000)])
        by_key = {await where({}, key_id="k1") for _ in range(20)}
        by_session = {await where({"user": f"u{i}"}, session="s-9") for i in range(20)}  # the session wins over user
        return same_user, users, by_key, by_session

    same_user, users, by_key, by_session = run(go())
    assert len(same_user) == 1 and len(by_key) == 1 and len(by_session) == 1
    assert 20 <= users["canary"] <= 90, users  # about 1 % of the callers, each one all the time
