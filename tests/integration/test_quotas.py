"""Quotas through real gateways: exact request and concurrency limits, token budgets, 429 headers,
usage records — with the in-process store and with two gateways sharing a real Redis server."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time

import httpx
import pytest

from conftest import EMBEDDED, SEEKSTACK, Server, as_key, make_key, make_user

HELLO = [{"role": "user", "content": "Hi"}]


def away_from_minute_edge(margin: float = 15.0) -> None:
    """Per-minute windows turn over on the UTC minute: start a counting test well inside one."""
    into = time.time() % 60
    if into > 60 - margin:
        time.sleep(60 - into + 0.2)


def set_limits(server, scope, name, **limits):
    r = server.security.put("/admin/v1/limits", json={"scope": scope, "name": name, **limits})
    assert r.status_code == 200, r.text


async def burst(urls_and_keys, n, method="GET", path="/v1/models", body=None):
    """n requests at once, spread over the given (url, key) gateways; their status codes."""
    async with httpx.AsyncClient(timeout=60) as c:
        calls = [c.request(method, url + path, json=body, headers={"Authorization": f"Bearer {key}"})
                 for i in range(n) for url, key in [urls_and_keys[i % len(urls_and_keys)]]]
        return [r for r in await asyncio.gather(*calls)]


def test_requests_per_minute_is_exact_under_concurrency(server):
    key = make_key(server, make_user(server, "api_consumer"))
    with as_key(server, key) as c:
        kid = c.get("/admin/v1/whoami").json()["key_id"]
    set_limits(server, "key", kid, rpm=7)
    away_from_minute_edge()
    responses = asyncio.run(burst([(server.url, key)], 20))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 7 - 0 and codes.count(429) == 13, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "7" and refused.headers["x-ratelimit-remaining-requests"] == "0"
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "requests per minute" in error["message"]


def test_token_budget_and_usage_records(server):
    """A request reserves its prompt plus max_tokens: what would not fit is refused before it runs."""
    user = make_user(server, "api_consumer")
    key = make_key(server, user)
    set_limits(server, "user", user, tpm=60)
    with as_key(server, key) as c:
        first = c.post("/v1/chat/completions", json={"model": "smollm2-135m", "messages": HELLO, "max_tokens": 8})
        assert first.status_code == 200 and first.headers["x-ratelimit-limit-tokens"] == "60"
        used = first.json()["usage"]["total_tokens"]
        assert 30 < used <= 60 - 8 + 8  # the chat template makes the prompt ~30 tokens
        second = c.post("/v1/chat/completions", json={"model": "smollm2-135m", "messages": HELLO, "max_tokens": 8})
        assert second.status_code == 429 and "tokens per minute" in second.json()["error"]["message"]
        assert "needs up to" in second.json()["error"]["message"]  # prompt + max_tokens no longer fits
    rows = [r for r in server.http.get("/admin/v1/usage").json()["data"] if r["user"] == user]
    assert len(rows) == 1 and rows[0]["requests"] == 1 and rows[0]["prompt_tokens"] + rows[0]["completion_tokens"] == used
    assert rows[0]["model"] == "smollm2-135m" and rows[0]["team"] == "default"


def test_token_limits_hold_under_30_concurrent_requests(server):
    """tpm 100 once admitted 30 of 30 concurrent requests using 1,170 tokens: now their sum stays within it."""
    user = make_user(server, "api_consumer")
    key = make_key(server, user)
    set_limits(server, "user", user, tpm=100)
    body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Tell me a story."}]}
    responses = asyncio.run(burst([(server.url, key)], 30, "POST", "/v1/chat/completions", body))
    served = [r.json()["usage"]["total_tokens"] for r in responses if r.status_code == 200]
    assert served and sum(served) <= 100, served
    assert {r.status_code for r in responses} <= {200, 429}


def test_a_daily_budget_bounds_one_request_without_max_tokens(server):
    """daily_tokens 50 let one request use 231: without max_tokens the answer is cut at what the budget has left."""
    user = make_user(server, "api_consumer")
    key = make_key(server, user)
    set_limits(server, "user", user, daily_tokens=50)
    with as_key(server, key) as c:
        r = c.post("/v1/chat/completions", json={"model": "smollm2-135m", "ignore_eos": True,
                                                 "messages": [{"role": "user", "content": "Write a long essay."}]})
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"
        assert r.json()["usage"]["total_tokens"] <= 50
        again = c.post("/v1/chat/completions", json={"model": "smollm2-135m", "messages": HELLO})
        assert again.status_code == 429 and "tokens per day" in again.json()["error"]["message"]


def test_team_limits_are_for_global_admins_only(server):
    keymaster = make_key(server, make_user(server, "team_keymaster"))
    with as_key(server, keymaster) as c:
        r = c.put("/admin/v1/limits", json={"scope": "team", "name": "default", "rpm": 100000})
        assert r.status_code == 403


@pytest.fixture(scope="module")
def two_gateways(tmp_path_factory, redis_url):
    """Two gateway processes sharing the identity database and Redis, each with its own engine and audit chain."""
    tmp = tmp_path_factory.mktemp("pair")
    state = tmp / "shared-state"
    base = {"state_dir": str(state), "quotas": {"store": "redis", "redis_url": redis_url},
            "models": [{"name": "m", "source": "embedded", "context": 512, "slots": 4, "threads": 1}]}
    a = Server(tmp, {**base, "audit": {"dir": str(tmp / "audit-a")}}, name="a").start()
    b = Server(tmp, {**base, "audit": {"dir": str(tmp / "audit-b")}}, name="b").start()
    yield a, b
    a.stop()
    b.stop()


def test_request_limit_is_exact_across_two_gateways_sharing_redis(two_gateways):
    a, b = two_gateways

    def limited_key(rpm):
        key = make_key(a, make_user(a, "api_consumer"))
        with as_key(a, key) as c:
            set_limits(a, "key", c.get("/admin/v1/whoami").json()["key_id"], rpm=rpm)
        return key

    # one counter for both: 4 on A and 4 on B use up 8, then both refuse
    away_from_minute_edge(25)
    key = limited_key(8)
    codes = [asyncio.run(burst([(gw.url, key)], 1))[0].status_code for gw in (a, b) for _ in range(4)]
    assert codes == [200] * 8
    assert [asyncio.run(burst([(gw.url, key)], 1))[0].status_code for gw in (a, b)] == [429, 429]
    # exact under a concurrent burst spread over both gateways
    key = limited_key(11)
    codes = [r.status_code for r in asyncio.run(burst([(a.url, key), (b.url, key)], 40))]
    assert codes.count(200) == 11 and codes.count(429) == 29, codes


def test_concurrency_limit_is_exact_across_two_gateways(two_gateways):
    a, b = two_gateways
    user = make_user(a, "api_consumer")
    key = make_key(a, user)
    set_limits(a, "user", user, concurrent=2)
    body = {"model": "m", "messages": HELLO, "max_tokens": 48, "ignore_eos": True}
    responses = asyncio.run(burst([(a.url, key), (b.url, key)], 6, "POST", "/v1/chat/completions", body))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 429, 429, 429, 429], codes
    # released when they finish
    assert [r.status_code for r in asyncio.run(burst([(b.url, key)], 1, "POST", "/v1/chat/completions", body))] == [200]


def test_a_revoke_on_one_gateway_applies_on_the_other_at_once(two_gateways):
    a, b = two_gateways
    key = make_key(a, make_user(a, "api_consumer"))
    with as_key(b, key) as on_b:
        assert on_b.get("/v1/models").status_code == 200  # b has the key cached now
        kid = on_b.get("/admin/v1/whoami").json()["key_id"]
        assert a.security.delete(f"/admin/v1/keys/{kid}").status_code == 200
        assert on_b.get("/v1/models").status_code == 401


def test_a_gateway_follows_a_sentinel_failover_of_the_quota_store_and_stays_exact(tmp_path):
    """Quotas in a Redis that Sentinel watches (quotas.redis_sentinels), its servers behind a
    password from the environment (refused at start, in one line, while it is not set): the
    master is killed.
    Meanwhile requests under a limit get 503 with Retry-After and unlimited ones are served, the
    gateway staying ready; once the Sentinel has promoted the replica (about 3 s here) the gateway
    counts there, without a restart: 4 before the kill and the rest after make exactly rpm."""
    from redisserver import SentinelGroup

    group = SentinelGroup(tmp_path, password=secrets.token_hex(16))  # the servers require it
    try:
        gw = Server(tmp_path, {"models": [{**EMBEDDED, "context": 512, "threads": 1}], "quotas": {
            "store": "redis", "redis_sentinels": [group.sentinel], "redis_sentinel_master": group.master,
            "redis_password_env": "QUOTA_REDIS_PASSWORD"}})
        unset = subprocess.run([*SEEKSTACK, "serve", "--config", str(gw.config_path), "--port", str(gw.port)],
                               capture_output=True, text=True, timeout=60)
        assert unset.returncode == 1 and "Traceback" not in unset.stderr
        assert "quotas.redis_password_env: the environment variable QUOTA_REDIS_PASSWORD is not set" in unset.stderr
        gw.env = {"QUOTA_REDIS_PASSWORD": group.password}
        gw.start()
        assert group.password not in gw.log_path.read_text()
        key = make_key(gw, make_user(gw, "api_consumer"))
        with as_key(gw, key) as c:
            set_limits(gw, "key", c.get("/admin/v1/whoami").json()["key_id"], rpm=10)
        away_from_minute_edge(40)
        with as_key(gw, key) as c:
            assert [c.get("/v1/models").status_code for _ in range(4)] == [200] * 4
            group.replicated()
            group.kill_master()
            refused = c.get("/v1/models")
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "storage_unavailable"
            assert "Retry-After" in refused.headers
            assert gw.http.get("/v1/models").status_code == 200  # the admin's key has no limit
            ready = gw.http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["quotas"].startswith("unavailable: ")
            codes, deadline = [], time.monotonic() + 20
            while 200 not in codes and time.monotonic() < deadline:
                codes.append(c.get("/v1/models").status_code)
                time.sleep(0.2)
            assert set(codes) <= {503, 200} and codes[-1] == 200, codes
            assert group.master_port() == group.ports["replica"]
            after = [c.get("/v1/models").status_code for _ in range(6)]
            assert after == [200] * 5 + [429], after  # 4 + 1 + 5 = 10, counted across the failover
        assert "quotas" not in gw.http.get("/readyz").json()
    finally:
        group.stop()
