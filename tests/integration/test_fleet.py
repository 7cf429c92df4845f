"""Host roles and a fleet: an engines host, three stateless gateways behind HAProxy.

- `seekstack engines` runs a simulated vLLM (DeepSeek-R1 dialect; the simulator stands in for
  vLLM, which needs a GPU) and a real llama.cpp with the embedded model, each on TCP with a
  key from a 0600 file;
- three `seekstack gateway` processes name those engines (``engine.endpoints``) and share the
  governance database and Redis (quotas); each writes its own audit chain;
- Debian's HAProxy balances them, health-checking ``/readyz``; Debian's nginx too, with the
  operations guide's lines (one test kills a gateway behind each).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time

import httpx
import pytest
import yaml
from openai import OpenAI

from balancer import HAProxy, Nginx
from conftest import SEEKSTACK, Server, as_key, free_port, make_key, make_user
from hfdir import make_hf_dir
from test_quotas import away_from_minute_edge, burst, set_limits
from test_supervision import wait_until

from seekstack import __version__
from seekstack.governance.audit import read_records

CONTEXT = 512


class EnginesHost:
    """`seekstack engines` on this machine (a GPU host, in production)."""

    def __init__(self, tmp, models: list[dict], env: dict[str, str]):
        self.config = tmp / "engines.yaml"
        self.config.write_text(yaml.safe_dump({"state_dir": str(tmp / "engines-state"), "models": models}))
        self.log = tmp / "engines.log"
        self.proc = subprocess.Popen([*SEEKSTACK, "engines", "--config", str(self.config)],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     env={**os.environ, **env})

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "engines ready" in self.log.read_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"seekstack engines did not get ready:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fleet(request, tmp_path_factory, redis_url):
    """On SQLite the gateways share one state directory (one host); on PostgreSQL each has its
    own, as on separate hosts, with the same pepper copied in."""
    tmp = tmp_path_factory.mktemp(f"fleet-{request.param}")
    key_file = tmp / "engine.key"
    key_file.write_text(secrets.token_hex(32))
    key_file.chmod(0o600)
    r1_port, small_port = free_port(), free_port()
    engines = EnginesHost(tmp, [
        {"name": "deepseek-r1", "path": str(make_hf_dir(tmp / "r1")), "context": CONTEXT, "slots": 8,
         "engine": {"kind": "vllm", "simulate": True, "port": r1_port, "api_key_file": str(key_file)}},
        {"name": "smollm2", "source": "embedded", "context": CONTEXT, "slots": 4, "threads": 1,
         "engine": {"kind": "llamacpp", "port": small_port, "api_key_file": str(key_file)}},
    ], env={"SEEKSTACK_SIM_OPTIONS": "--itl-ms 15"})
    engines.wait_ready()
    models = [
        {"name": "deepseek-r1", "context": CONTEXT,
         "engine": {"kind": "vllm", "endpoints": [f"http://127.0.0.1:{r1_port}"], "api_key_file": str(key_file)}},
        {"name": "smollm2", "context": CONTEXT, "slots": 4,
         "engine": {"kind": "llamacpp", "endpoints": [f"http://127.0.0.1:{small_port}"], "api_key_file": str(key_file)}},
    ]
    shared = {"models": models, "quotas": {"store": "redis", "redis_url": redis_url}}
    if request.param == "postgres":
        shared["storage"] = {"url": request.getfixturevalue("postgres").new_database()}
    else:
        shared["state_dir"] = str(tmp / "shared-state")
    gateways = {}
    for name in "abc":  # a first, alone: it makes the database and the first admin keys
        gw = Server(tmp, {**shared, "audit": {"dir": str(tmp / f"audit-{name}")}}, name=name, command="gateway")
        if name != "a" and request.param == "postgres":
            first = gateways["a"].key_path.parent
            gw.key_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(first / "pepper.key", gw.key_path.parent / "pepper.key")
            gw.key_path = gateways["a"].key_path  # the first admin keys were written beside the first gateway
        gateways[name] = gw.start()
    balancer = HAProxy(tmp, {name: gw.port for name, gw in gateways.items()})
    nginx = Nginx(tmp, {name: gw.port for name, gw in gateways.items()})  # the other balancer the guide shows
    yield {"engines": engines, "gateways": gateways, "balancer": balancer, "nginx": nginx, "key_file": key_file,
           "ports": {"deepseek-r1": r1_port, "smollm2": small_port}, "tmp": tmp}
    nginx.stop()
    balancer.stop()
    for gw in gateways.values():
        gw.stop()
    engines.stop()


def test_engines_on_tcp_take_only_requests_with_their_key(fleet):
    key = fleet["key_file"].read_text()
    for port in fleet["ports"].values():
        models = f"http://127.0.0.1:{port}/v1/models"
        assert httpx.get(models).status_code == 401
        assert httpx.get(models, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(models, headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_sighup_leaves_the_engines_host_running(fleet):
    """A gateway reloads on SIGHUP; an engines host must not die of one (the signal's default)."""
    engines = fleet["engines"]
    engines.proc.send_signal(signal.SIGHUP)
    key = fleet["key_file"].read_text()
    time.sleep(0.5)
    assert engines.proc.poll() is None
    assert wait_until(lambda: "an engines host does not reload" in engines.log.read_text(), 5)
    for port in fleet["ports"].values():
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_ps_on_a_gateway_says_where_each_engine_runs(fleet):
    a = fleet["gateways"]["a"]
    table = subprocess.run([*SEEKSTACK, "ps", "--url", a.url, "--api-key", a.key], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "COLUMNS": "220"})
    assert table.returncode == 0, table.stderr
    for port in fleet["ports"].values():
        assert f"127.0.0.1:{port}" in table.stdout, table.stdout
    assert "unix socket" not in table.stdout


def test_the_balanced_gateways_serve_both_engines(fleet):
    a = fleet["gateways"]["a"]
    client = OpenAI(base_url=fleet["balancer"].url + "/v1", api_key=a.key, max_retries=0, timeout=60)
    r1 = client.chat.completions.create(model="deepseek-r1", messages=[{"role": "user", "content": "one two"}])
    assert r1.choices[0].message.content.endswith("one two")
    assert r1.choices[0].message.reasoning_content  # the simulated R1 reasons; vLLM's field is renamed
    small = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert small.usage.completion_tokens >= 1
    # every gateway lists both models as ready; the registry says where they run
    for gw in fleet["gateways"].values():
        assert {m["id"]: m["state"] for m in gw.http.get("/v1/models").json()["data"]} == \
            {"deepseek-r1": "ready", "smollm2": "ready"}
        deployments = {d["alias"]: d for d in gw.http.get("/admin/v1/deployments").json()["data"]}
        assert deployments["deepseek-r1"]["source"] == "static" and deployments["deepseek-r1"]["engine"] == "vllm"


def test_a_key_revoked_through_one_gateway_is_refused_by_the_others_within_a_second(fleet):
    a, b, c = (fleet["gateways"][n] for n in "abc")
    key = make_key(a, make_user(a, "api_consumer"))
    with as_key(b, key) as on_b, as_key(c, key) as on_c:
        assert on_b.get("/v1/models").status_code == 200 and on_c.get("/v1/models").status_code == 200  # cached
        kid = on_b.get("/admin/v1/whoami").json()["key_id"]
        assert a.security.delete(f"/admin/v1/keys/{kid}").status_code == 200
        revoked = time.monotonic()
        refused = {}
        while len(refused) < 2 and time.monotonic() - revoked < 5:
            for name, client in (("b", on_b), ("c", on_c)):
                if name not in refused and client.get("/v1/models").status_code == 401:
                    refused[name] = time.monotonic() - revoked
        assert set(refused) == {"b", "c"} and max(refused.values()) < 1.0, refused


def test_quotas_are_exact_across_three_gateways(fleet):
    gateways = list(fleet["gateways"].values())
    a = gateways[0]
    key = make_key(a, make_user(a, "api_consumer"))
    with as_key(a, key) as c:
        set_limits(a, "key", c.get("/admin/v1/whoami").json()["key_id"], rpm=13)
    away_from_minute_edge(25)
    codes = [r.status_code for r in asyncio.run(burst([(gw.url, key) for gw in gateways], 45))]
    assert codes.count(200) == 13 and codes.count(429) == 32, codes


def test_a_gateway_killed_under_32_concurrent_requests_loses_none(fleet):
    """kill -9 one gateway while 32 requests are in flight through the balancer: every request is
    answered (HAProxy retries those the dead gateway dropped), each answer has its audit record,
    and usage counts each once (what the dead gateway answered, its next start counts)."""
    gateways, balancer = fleet["gateways"], fleet["balancer"]
    key = gateways["a"].key

    def served() -> int:  # deepseek-r1 requests in the shared usage table, once each gateway has counted its chain
        rows = []
        for gw in gateways.values():
            r = httpx.get(gw.url + "/admin/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=30)
            assert r.status_code == 200, r.text
            rows = r.json()["data"]
        return sum(row["requests"] for row in rows if row["model"] == "deepseek-r1")

    before = served()
    straight_to_b = [httpx.post(gateways["b"].url + "/v1/chat/completions", json=KILL_BODY, timeout=60,
                                headers={"Authorization": f"Bearer {key}"}) for _ in range(3)]
    assert [r.status_code for r in straight_to_b] == [200] * 3  # answered by b, not yet in the usage table
    kill_one_under_32_requests(fleet, balancer.url, "b")
    # the balancer noticed: the dead gateway is out, the others answer on
    after = [r.status_code for r in asyncio.run(burst([(balancer.url, key)], 8))]
    assert after == [200] * 8
    gateways["b"].start()  # back for the tests after this one: the fleet fixture stops it, not this test's cleanup
    assert Server.started.pop() is gateways["b"]
    assert served() == before + 3 + 32  # usage too: each answer once, b's three counted by its next start


KILL_BODY = {"model": "deepseek-r1", "messages": [{"role": "user", "content": "count " * 8}], "max_tokens": 40}


def kill_one_under_32_requests(fleet, url: str, victim: str) -> None:
    """kill -9 gateway ``victim`` while 32 requests are in flight through the balancer at ``url``:
    every one is answered, and each answer has its audit record."""
    gateways = fleet["gateways"]

    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=60,
                                     headers={"Authorization": f"Bearer {gateways['a'].key}"}) as client:
            calls = [asyncio.ensure_future(client.post("/v1/chat/completions", json=KILL_BODY)) for _ in range(32)]
            await asyncio.sleep(0.3)  # all of them in flight (40 tokens at 15 ms each)
            gateways[victim].proc.send_signal(signal.SIGKILL)
            return await asyncio.gather(*calls)

    responses = asyncio.run(main())
    gateways[victim].proc.wait(10)
    assert [r.status_code for r in responses] == [200] * 32, [r.text for r in responses if r.status_code != 200]
    answered = {r.headers["x-request-id"] for r in responses}
    audited = set()
    for name in "abc":
        for record in read_records(fleet["tmp"] / f"audit-{name}" / "audit.db"):
            if record.get("event") == "request" and record.get("decision") == "allow":
                audited.add(record["request_id"])
    assert answered <= audited


def test_behind_nginx_too_a_gateway_killed_under_32_concurrent_requests_loses_none(fleet):
    """Open-source nginx, with the operations guide's lines (no active health check; a POST that
    found its gateway gone is sent to the next one): the same kill -9, every request answered."""
    nginx, gateways = fleet["nginx"], fleet["gateways"]
    kill_one_under_32_requests(fleet, nginx.url, "c")
    after = [r.status_code for r in asyncio.run(burst([(nginx.url, gateways["a"].key)], 8))]
    assert after == [200] * 8  # the dead gateway is passed over
    gateways["c"].start()  # back for the tests after this one: the fleet fixture stops it
    assert Server.started.pop() is gateways["c"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SEEKSTACK, *args], capture_output=True, text=True, timeout=60)


def test_each_host_role_refuses_a_config_it_cannot_run_listing_every_problem(tmp_path):
    config = tmp_path / "seekstack.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "models": [
        {"name": "here", "source": "embedded"},
        {"name": "there", "engine": {"kind": "vllm", "endpoints": ["http://127.0.0.1:9"]}},
        {"name": "keyless", "source": "embedded", "engine": {"kind": "llamacpp", "port": 9}}]}))
    gateway = run_cli("gateway", "--config", str(config))
    assert gateway.returncode == 1 and "Traceback" not in gateway.stderr
    assert "2 problem(s)" in gateway.stderr and "models[0] (here)" in gateway.stderr and "models[2]" in gateway.stderr
    engines = run_cli("engines", "--config", str(config))
    assert engines.returncode == 1 and "Traceback" not in engines.stderr
    assert "3 problem(s)" in engines.stderr, engines.stderr
    assert "models[1] (there): runs elsewhere" in engines.stderr
    assert "models[0] (here): set engine.api_key_file" in engines.stderr
    assert "models[2] (keyless): set engine.api_key_file" in engines.stderr


def test_url_and_endpoints_are_one_or_the_other(tmp_path):
    config = tmp_path / "seekstack.yaml"
    config.write_text(yaml.safe_dump({"models": [
        {"name": "both", "engine": {"kind": "openai", "url": "http://a:1", "endpoints": ["http://b:1"]}},
        {"name": "none", "engine": {"kind": "openai"}},
        {"name": "twice", "engine": {"kind": "vllm", "endpoints": ["http://b:1", "http://b:1/v1"]}}]}))
    check = run_cli("config", "check", str(config))
    assert check.returncode == 1
    assert "set one of `url` (one engine), `endpoints` (several) or `discover`" in check.stderr, check.stderr
    assert "set `url` (the server's base URL), `endpoints` or `discover`" in check.stderr
    assert "each address once" in check.stderr


def test_the_three_audit_chains_verify_together_and_a_missing_one_is_named(fleet):
    """Each gateway writes its own chain; `audit verify --chains` checks them against the writers
    registered in the shared store (after the kill -9 above, b's chain goes on where it stopped)."""
    tmp, a = fleet["tmp"], fleet["gateways"]["a"]
    chains = {name: tmp / f"audit-{name}" for name in "abc"}

    def verify(*names: str) -> subprocess.CompletedProcess:
        args = [arg for name in names for arg in ("--chains", str(chains[name]))]
        return run_cli("audit", "verify", "--config", str(a.config_path), *args)

    together = verify("a", "b", "c")
    assert together.returncode == 0 and "ok: 3 writer(s)" in together.stdout, together.stdout + together.stderr
    without_b = verify("a", "c")
    writer_b = (chains["b"] / "audit-writer.id").read_text()
    assert without_b.returncode == 1 and f"writer {writer_b}: its chain is missing" in without_b.stderr
    assert f"written by the gateway on {socket.gethostname()} in {chains['b']}" in without_b.stderr  # where to find it


def fourth_gateway(fleet, name: str, **config) -> Server:
    """Another gateway on the fleet's database (with its own audit directory unless given one)."""
    tmp, a = fleet["tmp"], fleet["gateways"]["a"]
    shared = {k: v for k, v in yaml.safe_load(a.config_path.read_text()).items() if k not in ("audit", "state_dir")}
    if "storage" not in shared:  # SQLite: the one state_dir the gateways share
        shared["state_dir"] = str(a.key_path.parent)
    gateway = Server(tmp, {**shared, "audit": {"dir": str(tmp / f"audit-{name}")}, **config}, name=name,
                     command="gateway")
    if "storage" in shared:  # a host of its own: the fleet's pepper copied in
        gateway.key_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(a.key_path.parent / "pepper.key", gateway.key_path.parent / "pepper.key")
    return gateway


def test_the_gateways_on_the_database_are_listed_with_their_state(fleet):
    """`seekstack gateways` (through the balancer): each gateway by its audit writer, serving, with
    its address, version and audit directory; one that shut down is listed as stopped. A gateway
    with a custom role the others lack is named as differing in its roles while it serves — in
    the listing, its log and its metrics."""
    tmp, gateways = fleet["tmp"], fleet["gateways"]
    a = gateways["a"]
    d = fourth_gateway(fleet, "d", roles={"analyst": {"permissions": ["usage:read"]}}).start()
    d_writer = (tmp / "audit-d" / "audit-writer.id").read_text()
    rows = {row["writer"]: row for row in a.http.get("/admin/v1/gateways").json()["data"]}
    assert rows[d_writer]["differs"] == ["roles"] and rows[d_writer]["state"] == "serving"
    assert [w for w, row in rows.items() if row["differs"]] == [d_writer]
    assert "this gateway's roles settings differ from most other serving gateways'" in d.log_path.read_text()
    metrics = httpx.get(d.url + "/metrics", headers={"Authorization": f"Bearer {a.key}"}, timeout=10).text
    assert 'seekstack_gateway_policy_differs{section="roles"} 1.0' in metrics
    assert 'seekstack_gateway_policy_differs{section="pii"} 0.0' in metrics
    assert 'seekstack_fleet_gateways{state="serving"} 4.0' in metrics
    d.stop()

    flushed = time.time()  # a usage query flushes a's batches: its heartbeat with them
    assert httpx.get(a.url + "/admin/v1/usage", headers={"Authorization": f"Bearer {a.key}"}, timeout=30).status_code == 200
    listed = run_cli("gateways", "--url", fleet["balancer"].url, "--api-key", a.key, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["writer"]: row for row in json.loads(listed.stdout)}
    for name, gw in {**gateways, "d": d}.items():
        row = rows[(tmp / f"audit-{name}" / "audit-writer.id").read_text()]
        assert row["state"] == ("stopped" if name == "d" else "serving"), (name, row)
        assert row["address"].endswith(f":{gw.port}") and row["audit_dir"] == str(tmp / f"audit-{name}")
        assert row["version"] == __version__ and row["host"] == socket.gethostname()
        assert row["seen"] >= row["started"] > 0 and row["differs"] == []  # d, stopped, no longer counts
    assert len(rows) == 4 and rows[(tmp / "audit-a" / "audit-writer.id").read_text()]["seen"] >= flushed
    table = run_cli("gateways", "--url", fleet["balancer"].url, "--api-key", a.key)
    assert table.returncode == 0 and table.stdout.count("serving") == 3 and "stopped" in table.stdout


def test_a_gateway_on_a_copy_of_a_running_gateways_audit_directory_is_refused(fleet):
    """A cloned VM image, a volume attached twice: e starts on a copy of b's audit directory while
    b serves. It waits for b to fall silent, sees b's next heartbeat (within 10 s), and is refused
    in one line naming b and the copy, which it leaves untouched; b's row in the roster is b's still."""
    tmp, b = fleet["tmp"], fleet["gateways"]["b"]
    writer = (tmp / "audit-b" / "audit-writer.id").read_text()
    shutil.copytree(tmp / "audit-b", tmp / "audit-e")
    def files(directory):  # but the lock a starting process takes on the directory (statelock.py)
        return {path.name: path.read_bytes() for path in directory.iterdir() if path.name != "serve.lock"}

    copy = files(tmp / "audit-e")
    e = fourth_gateway(fleet, "e")
    with pytest.raises(RuntimeError, match="serve exited early"):
        e.start()
    log = e.log_path.read_text()
    assert f"audit writer {writer} is being written by the gateway on {socket.gethostname()} (pid {b.proc.pid}" in log
    assert f"{tmp / 'audit-e'} is a copy of that gateway's audit directory" in log and "Traceback" not in log
    assert files(tmp / "audit-e") == copy  # evidence, untouched
    rows = {row["writer"]: row for row in b.http.get("/admin/v1/gateways").json()["data"]}
    assert rows[writer]["state"] == "serving" and rows[writer]["pid"] == b.proc.pid
    assert rows[writer]["audit_dir"] == str(tmp / "audit-b")
    assert "audit_chain" not in b.http.get("/readyz").json()
