"""The shared state goes away and comes back: a gateway on PostgreSQL and Redis of its own
(restarted and paused here), serving a simulated vLLM (the simulator stands in: no GPU here).

- PostgreSQL restarts (an upgrade, a failover): a restart while the gateway is idle costs no
  request (a read on the dead connection is made again on a new one); meanwhile every request gets 503
  ``storage_unavailable`` and ``/readyz`` says why — so the balancer in front (HAProxy) takes the
  gateway out and answers with its own 503, in the OpenAI error shape; afterwards the gateway
  serves again by itself.
- PostgreSQL stops answering (hung, or a partition: connections open, no reply): a request
  whose key must be looked up gets 503 after the statement deadline, and meanwhile every
  stream on the gateway goes on — the lookup waits in a worker thread, not on the event loop.
- Redis stops answering: requests under a limit get 503 (fail-closed) within the client's
  timeout, the others are served, and a stream in flight is answered whole and audited. Its
  concurrency slot, which could not be released, lapses with its lease instead of for good.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest

from balancer import HAProxy
from conftest import Server, as_key, free_port, make_key, make_user, start_sim
from test_quotas import set_limits
from test_supervision import wait_until

from seekstack.governance.audit import read_records
from seekstack.governance.sessions import COOKIE

LEASE_S = 3
BODY = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from pgserver import PostgresServer
    from redisserver import RedisServer

    tmp = tmp_path_factory.mktemp("outages")
    pg, redis = PostgresServer(), RedisServer(tmp)
    sim, port = start_sim("--dialect", "vllm", "--model", "m", "--itl-ms", "20", "--output-len", "100")
    # Two hosts, as for a primary and its standby (libpq tries them in turn; the first is down):
    # every reconnect below finds the server that answers.
    url = pg.new_database().replace("@127.0.0.1:", f"@127.0.0.1:{free_port()},127.0.0.1:") + "?target_session_attrs=read-write"
    gateway = Server(tmp, {
        "storage": {"url": url},
        "quotas": {"store": "redis", "redis_url": redis.socket, "concurrency_lease_s": LEASE_S},
        "audit": {"dir": str(tmp / "audit")},
        "models": [{"name": "m", "context": 4096, "engine": {"kind": "vllm", "endpoints": [f"http://127.0.0.1:{port}"]}}],
    }, command="gateway").start()
    balancer = HAProxy(tmp, {"a": gateway.port})
    yield {"gateway": gateway, "pg": pg, "redis": redis, "audit": tmp / "audit" / "audit.db", "balancer": balancer}
    balancer.stop()
    gateway.stop()
    sim.kill()
    redis.stop()
    pg.stop()


def test_a_restarted_database_refuses_meanwhile_and_the_gateway_recovers_by_itself(stack):
    gateway, pg = stack["gateway"], stack["pg"]
    assert gateway.http.post("/v1/chat/completions", json=BODY).status_code == 200
    pg.halt()
    try:
        for _ in range(3):
            r = gateway.http.post("/v1/chat/completions", json=BODY)
            assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable", r.text
            assert r.headers["retry-after"]
        ready = gateway.http.get("/readyz")
        assert ready.status_code == 503 and "governance database" in ready.json()["storage"], ready.text
        # the balancer's health check (every 200 ms) takes the gateway out; its own answer is an OpenAI error
        client = openai.OpenAI(base_url=f"{stack['balancer'].url}/v1", api_key=gateway.key_path.read_text().strip(),
                               max_retries=0)
        assert wait_until(lambda: "gateway_unavailable" in httpx.get(f"{stack['balancer'].url}/v1/models").text, 5)
        with pytest.raises(openai.InternalServerError) as refused:
            client.chat.completions.create(model="m", messages=BODY["messages"], max_tokens=4)
        assert refused.value.status_code == 503 and refused.value.code == "gateway_unavailable"
        assert refused.value.response.headers["retry-after"] == "2"
    finally:
        pg.start()
    # no request is needed: the gateway reconnects by itself, and a balancer sees it ready again
    assert wait_until(lambda: gateway.http.get("/readyz").status_code == 200, 15), gateway.http.get("/readyz").text
    assert gateway.http.post("/v1/chat/completions", json=BODY).status_code == 200
    assert wait_until(lambda: httpx.get(f"{stack['balancer'].url}/readyz").status_code == 200, 5)  # back in
    assert client.chat.completions.create(model="m", messages=BODY["messages"], max_tokens=4).choices
    key = make_key(gateway, make_user(gateway, "api_consumer"))  # writes go through too
    with as_key(gateway, key) as client:
        assert client.post("/v1/chat/completions", json=BODY).status_code == 200
    log = gateway.log_path.read_text()
    assert log.count("governance database connection lost") == 1 and "connection restored" in log
    assert "Traceback" not in log


def test_a_restart_while_the_gateway_is_idle_costs_no_request(stack):
    """The statements' connection died with the restart, unseen while idle: the first lookup after
    it finds it dead, and is read again on a new connection rather than refused."""
    gateway, pg = stack["gateway"], stack["pg"]
    fresh = make_key(gateway, make_user(gateway, "api_consumer"))  # its first use must read the database
    pg.halt()
    pg.start()
    with as_key(gateway, fresh) as client:
        r = client.post("/v1/chat/completions", json=BODY)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("credential", ["key", "console session"])
def test_a_silent_database_costs_a_bounded_wait_and_holds_up_no_stream(stack, credential):
    gateway, pg = stack["gateway"], stack["pg"]
    fresh = make_key(gateway, make_user(gateway, "api_consumer"))  # never used: not in any cache
    headers, cookies = {"Authorization": f"Bearer {fresh}"}, {}
    if credential == "console session":  # signed in, and the session not yet used: not in any cache
        signed_in = httpx.post(f"{gateway.url}/console/session", headers=headers)
        assert signed_in.status_code == 200, signed_in.text
        headers, cookies = {}, {COOKIE: signed_in.cookies[COOKIE]}
    refused = {}

    def first_use():
        started = time.monotonic()
        r = httpx.get(f"{gateway.url}/v1/models", headers=headers, cookies=cookies, timeout=60)
        refused.update(status=r.status_code, code=r.json()["error"]["code"], waited=time.monotonic() - started)

    stream_body = {**BODY, "max_tokens": 100, "stream": True}  # ~2 s at 20 ms a token
    with gateway.http.stream("POST", "/v1/chat/completions", json=stream_body) as stream:
        lines = stream.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        pg.pause()
        try:
            asking = threading.Thread(target=first_use)
            asking.start()
            arrivals, rest = [time.monotonic()], []
            for line in lines:
                if line.startswith("data: "):
                    rest.append(line)
                    arrivals.append(time.monotonic())
            asking.join(60)
        finally:
            pg.resume()
    assert rest[-1] == "data: [DONE]" and len(rest) >= 90
    # the lookup waited in a worker thread: the stream did not stop for it (on the loop: >= 5 s)
    assert max(b - a for a, b in zip(arrivals, arrivals[1:])) < 2.0
    assert refused["status"] == 503 and refused["code"] == "storage_unavailable", refused
    assert refused["waited"] < 15, refused  # the statement deadline (5 s), not TCP's minutes
    assert wait_until(lambda: httpx.get(f"{gateway.url}/v1/models", headers=headers, cookies=cookies).status_code == 200,
                      20, 0.5)
    log = gateway.log_path.read_text()
    assert "has not answered a statement in 5 s" in log and "Traceback" not in log


def test_the_statement_deadline_holds_while_the_change_feed_is_reconnecting(stack):
    """The feed's connection is cut, and the server stops answering before the feed is back: its
    thread then waits on connects to a silent server, and the deadline on the statements'
    connection (still open) must not wait with it."""
    import psycopg

    gateway, pg = stack["gateway"], stack["pg"]
    fresh = make_key(gateway, make_user(gateway, "api_consumer"))  # never used: not in any cache
    with psycopg.connect(pg.url(), autocommit=True) as admin:
        cut = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()").fetchall()
    pg.pause()  # within the feed's half-second wait before it connects again
    try:
        assert cut, "the change feed's connection was not found"
        started = time.monotonic()
        with as_key(gateway, fresh) as client:
            r = client.get("/v1/models", timeout=60)
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable", r.text
        assert time.monotonic() - started < 15  # the statement deadline (5 s), not the pause's length
    finally:
        pg.resume()
    with as_key(gateway, fresh) as client:
        assert wait_until(lambda: client.get("/v1/models").status_code == 200, 20, 0.5)


def test_without_redis_limited_requests_get_503_and_the_slot_a_stream_kept_lapses(stack):
    gateway, redis = stack["gateway"], stack["redis"]
    user = make_user(gateway, "api_consumer")
    limited = make_key(gateway, user)
    set_limits(gateway, "user", user, concurrent=1, rpm=1000)
    stream_body = {**BODY, "max_tokens": 100, "stream": True}  # ~2 s at 20 ms a token
    with as_key(gateway, limited) as client, client.stream("POST", "/v1/chat/completions", json=stream_body) as stream:
        assert stream.status_code == 200
        request_id = stream.headers["x-request-id"]
        lines = stream.iter_lines()
        next(line for line in lines if line.startswith("data: "))  # admitted (its slot is in Redis), and streaming
        redis.stop()  # the stream's slot cannot be released when it ends
        rest = [line for line in lines if line.startswith("data: ")]
    try:
        assert rest[-1] == "data: [DONE]"  # whole all the same
        assert sum(1 for line in rest[:-1] if json.loads(line[6:])["choices"][0]["delta"].get("content")) >= 90
        with as_key(gateway, limited) as client:
            r = client.post("/v1/chat/completions", json=BODY)
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable", r.text
        assert "quota store (Redis)" in r.json()["error"]["message"]
        assert gateway.http.post("/v1/chat/completions", json=BODY).status_code == 200  # no limit: served
        ready = gateway.http.get("/readyz")
        assert ready.status_code == 200 and "unavailable" in ready.json()["quotas"], ready.text  # only limits wait
    finally:
        redis.start()  # with its data: the stream's slot is still taken there
    # nobody renews that slot any more: it lapses within the lease, instead of refusing the user for good
    with as_key(gateway, limited) as client:
        assert wait_until(lambda: client.post("/v1/chat/completions", json=BODY).status_code == 200, 4 * LEASE_S, 0.5)
    assert "quotas" not in gateway.http.get("/readyz").json()
    audited = [rec for rec in read_records(stack["audit"]) if rec.get("request_id") == request_id]
    answer = [rec for rec in audited if rec.get("event") == "response"]
    assert len(answer) == 1 and answer[0]["status"] == 200 and answer[0]["completion_tokens"] == 100, audited
    log = gateway.log_path.read_text()
    assert "quota store (Redis) unavailable" in log and "quota store (Redis) answers again" in log
    assert "Traceback" not in log


def test_a_hung_redis_is_a_503_within_its_timeout_not_a_hung_request(stack):
    gateway, redis = stack["gateway"], stack["redis"]
    user = make_user(gateway, "api_consumer")
    limited = make_key(gateway, user)
    set_limits(gateway, "user", user, rpm=1000)
    redis.pause()  # there, but answering nothing (a partition, a stalled host)
    try:
        started = time.monotonic()
        with as_key(gateway, limited) as client:
            r = client.post("/v1/chat/completions", json=BODY)
        waited = time.monotonic() - started
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable", r.text
        assert waited < 15, waited  # two tries of the 2 s timeout; redis-py's own retries took 26 s
        # /readyz says so at once, without waiting on Redis: the balancer's checks (200 ms) keep the gateway in
        ready = gateway.http.get("/readyz")
        assert ready.status_code == 200 and "unavailable" in ready.json()["quotas"], ready.text
        time.sleep(1.0)  # five health checks
        through = httpx.post(f"{stack['balancer'].url}/v1/chat/completions", json=BODY,
                             headers={"Authorization": f"Bearer {gateway.key_path.read_text().strip()}"})
        assert through.status_code == 200, through.text  # under no limit: served, through the balancer
    finally:
        redis.resume()
    with as_key(gateway, limited) as client:
        assert client.post("/v1/chat/completions", json=BODY).status_code == 200
