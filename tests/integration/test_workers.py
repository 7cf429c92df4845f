"""`seekstack serve --workers 2`: two gateway processes on one port, one engine supervised once,
quotas exact across them (Redis), a dead worker started again, every worker's audit chain whole."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from conftest import SEEKSTACK, Server, as_key, make_key, make_user, start_sim, streams_resumed
from test_quotas import away_from_minute_edge, burst, set_limits
from test_reload import model, reload, stream, write
from test_supervision import wait_until

from seekstack.cli.workers import RUNTIME_PREFIX, remove_orphaned_runtimes


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
    # new connections reach both (the kernel spreads them) — once the second is listening too: ready
    # means one worker answers, and on a loaded machine the other may still be starting
    assert wait_until(lambda: len(answering(workers)) == 2, 30)
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


def test_scaling_and_rollouts_by_hand_say_how_under_workers(workers):
    """The leader runs the engines: a worker asked to scale or roll out says what to do instead."""
    scaled = workers.http.post("/admin/v1/models/m/scale", json={"replicas": 2})
    assert scaled.status_code == 400 and "`serve --workers`" in scaled.json()["error"]["message"]
    assert "set the model's `replicas` in the config file" in scaled.json()["error"]["message"]
    rollout = workers.http.post("/admin/v1/rollouts", json={"model": "m", "to": "m@2"})
    assert rollout.status_code == 400 and "`serve --workers`" in rollout.json()["error"]["message"]


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


@pytest.mark.parametrize("field, value", [("autoscale", {"min_replicas": 1, "max_replicas": 2}), ("keep_alive", 300)])
def test_workers_with_an_autoscaled_or_unloading_model_are_refused_in_one_line(tmp_path, redis_url, field, value):
    """Only the one gateway process that sees a model's load can autoscale it, or unload it when
    idle: said before anything starts, naming the model (not a worker's generated config)."""
    config = tmp_path / "seekstack.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"),
                                      "quotas": {"store": "redis", "redis_url": redis_url},
                                      "models": [model("a", **{field: value})]}))
    result = subprocess.run([*SEEKSTACK, "serve", "--workers", "2", "--config", str(config), "--port", "8999"],
                            capture_output=True, text=True, timeout=60, env={**os.environ})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"--workers: model 'a' has `{field}`" in result.stderr and "worker-0.yaml" not in result.stderr, result.stderr


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False



def test_a_reload_reaches_every_worker_and_drops_no_stream(tmp_path, redis_url):
    """`seekstack config reload` (to whichever worker answers) and SIGHUP to the leader: the
    leader applies the file to its engines and every worker moves to them; the 16 streams in
    flight on both workers complete; the old engine stops only after they have."""
    srv = Server(tmp_path, {"quotas": {"store": "redis", "redis_url": redis_url},
                            "models": [model("a", slots=16), model("c")]})
    srv.extra_args = ["--workers", "2"]
    srv.env = {"SEEKSTACK_SIM_OPTIONS": "--itl-ms 25 --output-len 60"}
    srv.start()
    try:
        assert wait_until(lambda: len(answering(srv)) == 2, 30)  # both workers listen
        old_engines = engines(srv)  # a's and c's
        assert len(old_engines) == 2

        async def main():
            streams = []
            for _ in range(16):  # a client each: new connections, which the kernel spreads over the workers
                client = httpx.AsyncClient(base_url=srv.url, timeout=60, headers={"Authorization": f"Bearer {srv.key}"})
                streams.append(asyncio.ensure_future(_stream_on(client, "a")))
            await asyncio.sleep(0.4)  # all 16 are streaming (60 tokens × 25 ms each)
            write(srv, [model("a", slots=8), model("b")])  # a changed, b added, c removed
            began = time.monotonic()
            result = await asyncio.to_thread(reload, srv)
            return began, result, await asyncio.gather(*streams)

        began, result, answers = asyncio.run(main())
        assert result.returncode == 0, result.stdout + result.stderr
        assert "added: b" in result.stdout and "changed: a" in result.stdout and "removed: c" in result.stdout, result.stdout
        assert len({tag for tag, _, _ in answers}) == 2  # both workers had streams in flight
        assert all(ended > began for _, _, ended in answers)  # still streaming when the reload began
        assert all(done and len(text.split()) == 60 for _, (text, _, done), _ in answers), answers  # every text whole
        assert sum(resumed(srv).values()) == 0  # not one stream broke off (and went on on another engine)
        assert wait_until(lambda: not old_engines & engines(srv), 15)  # drained by every worker, then stopped
        assert len(engines(srv)) == 2  # the new a's and b's

        assert list(chat_per_worker(srv, "b").values()) == [200, 200]
        assert list(chat_per_worker(srv, "c").values()) == [404, 404]

        write(srv, [model("a", slots=8), {"name": "x", "engine": {"kind": "nosuch"}}])  # refused whole, on any worker
        refused = srv.http.post("/admin/v1/config/reload")
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_config"
        assert "nosuch" in refused.json()["error"]["message"]
        assert list(chat_per_worker(srv, "b").values()) == [200, 200]
        write(srv, [model("a", slots=8), model("b", keep_alive=60)])  # what --workers cannot run: refused as at start
        refused = srv.http.post("/admin/v1/config/reload")
        assert refused.status_code == 400 and "--workers: model 'b' has `keep_alive`" in refused.json()["error"]["message"]
        assert list(chat_per_worker(srv, "b").values()) == [200, 200]

        write(srv, [model("a", slots=8, replicas=2), model("b"), model("d")])  # scaled by the file
        os.kill(srv.proc.pid, signal.SIGHUP)  # to the leader
        assert wait_until(lambda: list(chat_per_worker(srv, "d").values()) == [200, 200], 30)
        assert wait_until(lambda: len(engines(srv)) == 4, 15)  # a's two, b's, d's
        assert sorted(r["model"] for r in srv.replicas()) == ["a", "a", "b", "d"]

        victim = children(srv)["gateways"][0]  # a worker started again starts on the config in force
        victim.kill()
        assert wait_until(lambda: len(children(srv)["gateways"]) == 2
                          and victim.pid not in {p.pid for p in children(srv)["gateways"]}, 30)
        assert wait_until(lambda: len(answering(srv)) == 2, 30)
        assert list(chat_per_worker(srv, "d").values()) == [200, 200]
        assert list(chat_per_worker(srv, "c").values()) == [404, 404]
    finally:
        srv.stop()


def engines(srv: Server) -> set[int]:
    """The pids of the engines the leader runs (its children that are not gateway workers)."""
    kids = set()
    for kid in psutil.Process(srv.proc.pid).children():
        try:
            if kid.status() != psutil.STATUS_ZOMBIE and "gateway" not in kid.cmdline():
                kids.add(kid.pid)
        except psutil.Error:
            pass
    return kids


def per_worker(srv: Server, call) -> dict[str, httpx.Response]:
    """``call(client)`` over new connections (the kernel spreads them) until both workers have
    answered: each worker's tag → its response."""
    seen: dict[str, httpx.Response] = {}
    for _ in range(60):
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"}) as fresh:
            r = call(fresh)
            seen[worker_of(r)] = r
        if len(seen) == 2:
            break
    return seen


def resumed(srv: Server) -> dict[str, float]:
    """Each worker's count of streams that broke off and went on on another engine."""
    counts = {tag: streams_resumed(r.text) for tag, r in per_worker(srv, lambda c: c.get("/metrics")).items()}
    assert len(counts) == 2, counts
    return counts


def chat_per_worker(srv: Server, name: str) -> dict[str, int]:
    """Each worker's status for a short chat with model ``name``."""
    body = {"model": name, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    return {tag: r.status_code for tag, r in per_worker(srv, lambda c: c.post("/v1/chat/completions", json=body)).items()}


def nothing_listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def answering(srv: Server) -> set[str]:
    """The workers that answer."""
    return set(per_worker(srv, lambda c: c.get("/v1/models")))


async def _stream_on(client: httpx.AsyncClient, name: str):
    """(the worker's tag, (text, finish reason, [DONE] came), when it ended) of one streamed chat."""
    async with client:
        tag = {}

        async def hook(response):
            tag["worker"] = worker_of(response)
        client.event_hooks["response"] = [hook]
        answer = await stream(client, name)
        return tag["worker"], answer, time.monotonic()


def test_the_workers_die_with_their_leader(tmp_path, redis_url):
    """A leader killed outright (the OOM killer, kill -9) takes its engines with it; its workers
    must go too, or they would hold the port and answer 503 for ever, beside a new start's."""
    srv = Server(tmp_path, {"quotas": {"store": "redis", "redis_url": redis_url}, "models": [model("a")]})
    srv.extra_args = ["--workers", "2"]
    srv.start()
    assert wait_until(lambda: len(answering(srv)) == 2, 30)
    workers = children(srv)["gateways"]
    runtime = Path(workers[0].cmdline()[-1]).parent  # the leader's private directory: the engines' key, the configs
    srv.proc.kill()
    srv.proc.wait(10)
    assert wait_until(lambda: not any(_alive(w) for w in workers), 10)
    # nothing answers on the port (binding it could still fail: freed, it is an ephemeral port
    # any process's outgoing connection may take, as one did in CI)
    assert wait_until(lambda: nothing_listens(srv.port), 10)
    assert (runtime / "engine.key").exists()  # a leader killed outright cleans up nothing ...
    mine = Path(tempfile.mkdtemp(prefix=RUNTIME_PREFIX))
    (mine / "leader.pid").write_text(str(os.getpid()))  # ... and a leader still running keeps its own
    remove_orphaned_runtimes()  # what the next leader does first
    assert not runtime.exists() and mine.exists()
    shutil.rmtree(mine)


def test_a_gateway_host_runs_workers_and_reloads_them_too(tmp_path, redis_url):
    """`seekstack gateway --workers 2`: engines on other hosts (here `seekstack sim`), the
    workers on one port; a model added to the file reaches both with one reload."""
    first, first_port = start_sim("--dialect", "vllm", "--model", "m")
    second, second_port = start_sim("--dialect", "vllm", "--model", "n")
    remote = {"kind": "vllm", "endpoints": [f"http://127.0.0.1:{first_port}"]}
    srv = Server(tmp_path, {"quotas": {"store": "redis", "redis_url": redis_url},
                            "models": [{"name": "m", "context": 4096, "engine": remote}]}, command="gateway")
    srv.extra_args = ["--workers", "2"]
    try:
        srv.start()
        assert wait_until(lambda: len(answering(srv)) == 2, 30)
        assert list(chat_per_worker(srv, "m").values()) == [200, 200]
        write(srv, [{"name": "m", "context": 4096, "engine": remote},
                    {"name": "n", "context": 4096,
                     "engine": {"kind": "vllm", "endpoints": [f"http://127.0.0.1:{second_port}"]}}])
        result = reload(srv)
        assert result.returncode == 0 and "added: n" in result.stdout, result.stdout + result.stderr
        assert wait_until(lambda: list(chat_per_worker(srv, "n").values()) == [200, 200], 15)
    finally:
        srv.stop()
        for sim in (first, second):
            sim.kill()
            sim.wait()
