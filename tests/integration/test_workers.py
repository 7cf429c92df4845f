"""`seekstack serve --workers 2`: two gateway processes on one port, one engine supervised once,
quotas exact across them (Redis), a dead worker started again, every worker's audit chain whole."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import httpx
import psutil
import pytest

from conftest import SEEKSTACK, Server, as_key, make_key, make_user
from test_quotas import away_from_minute_edge, burst, set_limits
from test_supervision import wait_until


@pytest.fixture(scope="module")
def workers(tmp_path_factory, redis_url):
    srv = Server(tmp_path_factory.mktemp("workers"), {
        "quotas": {"store": "redis", "redis_url": redis_url},
        "models": [{"name": "m", "source": "embedded", "context": 256, "slots": 4, "threads": 1}]})
    srv.extra_args = ["--workers", "2"]
    srv.start()
    yield srv
    srv.stop()


def children(srv: Server) -> dict[str, list[psutil.Process]]:
    """The leader's children: gateway workers and engines."""
    commands = {}
    for kid in psutil.Process(srv.proc.pid).children():
        try:
            commands[kid] = kid.cmdline()
        except psutil.Error:  # exited (a zombie until the leader reaps it)
            pass
    return {"gateways": [p for p, cmd in commands.items() if "gateway" in cmd],
            "engines": [p for p, cmd in commands.items() if any("llamacpp_worker" in a for a in cmd)]}


def worker_of(response: httpx.Response) -> str:
    return response.headers["x-request-id"][4:12]  # the process tag in every request id


def test_two_workers_share_one_port_and_one_engine(workers):
    # the second worker may still be between fork and exec (its command line still the leader's)
    assert wait_until(lambda: len(children(workers)["gateways"]) == 2, 10)
    kids = children(workers)
    assert len(kids["gateways"]) == 2 and len(kids["engines"]) == 1
    seen = set()
    for _ in range(40):
        with httpx.Client(base_url=workers.url, headers={"Authorization": f"Bearer {workers.key}"}) as fresh:
            seen.add(worker_of(fresh.get("/v1/models")))  # a new connection each: the kernel spreads them
        if len(seen) == 2:
            break
    assert len(seen) == 2
    engines = {r["base_url"] for r in workers.http.get("/admin/v1/replicas").json()["data"]}
    assert len(engines) == 1  # every worker routes to the one engine the leader runs
    answer = workers.http.post("/v1/chat/completions", json={"model": "m", "max_tokens": 2,
                                                             "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200


def test_quotas_are_exact_across_the_workers(workers):
    key = make_key(workers, make_user(workers, "api_consumer"))
    with as_key(workers, key) as c:
        set_limits(workers, "key", c.get("/admin/v1/whoami").json()["key_id"], rpm=9)
    away_from_minute_edge(25)
    codes = [r.status_code for r in asyncio.run(burst([(workers.url, key)], 30))]
    assert codes.count(200) == 9 and codes.count(429) == 21, codes


def test_a_console_sign_out_is_refused_by_every_worker(workers):
    """A session opened on one worker is honoured by both; signed out on one, both refuse it."""
    def fresh(cookie: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=workers.url, cookies={"seekstack_session": cookie} if cookie else None)

    with fresh() as c:
        token = c.post("/console/session", headers={"Authorization": f"Bearer {workers.key}"}).cookies["seekstack_session"]
    seen: dict[str, int] = {}
    for _ in range(40):  # a new connection each: the kernel spreads them over the workers
        with fresh(token) as c:
            r = c.get("/admin/v1/whoami")
            seen[worker_of(r)] = r.status_code
        if len(seen) == 2:
            break
    assert list(seen.values()) == [200, 200], seen
    with fresh(token) as c:
        page = c.get("/console/keys")
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        assert c.post("/console/signout", headers={"X-CSRF-Token": csrf}).status_code == 200
    refused: dict[str, int] = {}
    for _ in range(40):
        with fresh(token) as c:
            r = c.get("/admin/v1/whoami")
            refused[worker_of(r)] = r.status_code
        if len(refused) == 2:
            break
    assert list(refused.values()) == [401, 401], refused


def test_a_dead_worker_is_started_again_and_the_other_serves_meanwhile(workers):
    victim = children(workers)["gateways"][0]
    victim.kill()
    assert wait_until(lambda: not _alive(victim), 10)  # gone: its listening socket with it
    # New connections reach the other worker (a connection the dead one held is lost with it:
    # in front of clients that keep connections, a balancer retries; see docs/operations.md).
    codes = []
    for _ in range(10):
        with httpx.Client(base_url=workers.url, headers={"Authorization": f"Bearer {workers.key}"}) as fresh:
            codes.append(fresh.get("/v1/models").status_code)
    assert codes == [200] * 10
    assert wait_until(lambda: len(children(workers)["gateways"]) == 2
                      and victim.pid not in {p.pid for p in children(workers)["gateways"]}, 30)


def test_a_stop_drains_everything_and_each_worker_chain_verifies(workers):
    kids = children(workers)
    workers.proc.send_signal(signal.SIGTERM)
    workers.proc.wait(60)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for group in kids.values() for p in group)
    audit = workers.key_path.parent / "audit"
    args = [a for d in sorted(audit.glob("worker-*")) for a in ("--chains", str(d))]
    verdict = subprocess.run([*SEEKSTACK, "audit", "verify", "--config", str(workers.config_path), *args],
                             capture_output=True, text=True, timeout=60)
    assert verdict.returncode == 0 and "ok: 2 writer(s)" in verdict.stdout, verdict.stdout + verdict.stderr


def test_workers_without_shared_quota_counters_are_refused(tmp_path):
    config = tmp_path / "seekstack.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n")
    result = subprocess.run([*SEEKSTACK, "serve", "--workers", "2", "--config", str(config), "--port", "8999"],
                            capture_output=True, text=True, timeout=60, env={**os.environ})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--workers needs quotas.store: redis" in result.stderr, result.stderr


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

