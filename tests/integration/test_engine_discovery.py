"""A gateway that finds a model's engines by DNS (``engine.discover``), as gateways on Kubernetes
find a headless Service's pods. Two `seekstack engines` hosts run simulated vLLM (the simulator
stands in for vLLM, which needs a GPU) on 127.0.0.2 and 127.0.0.3, one port; a real DNS server
on loopback answers for their name, and the test changes its records as pods would come and go:

- a second address → a second endpoint, taking requests, without a reload;
- an address gone → its endpoint drained: the streams in flight on it complete there (none
  cut, none resumed elsewhere);
- the DNS server down → the endpoints stay (a resolver blip takes no model down);
- no addresses → no endpoints (503), and served again when one comes back.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest
from openai import AsyncOpenAI

from conftest import Server, free_port
from dnsserver import DnsServer
from hfdir import make_hf_dir
from test_fleet import EnginesHost
from test_supervision import wait_until

NAME = "engines-r1.llm.svc.cluster.local"


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("discovery")
    key_file = tmp / "engine.key"
    key_file.write_text(secrets.token_hex(32))
    key_file.chmod(0o600)
    port, path = free_port(), str(make_hf_dir(tmp / "r1"))
    hosts = {}
    for address in ("127.0.0.2", "127.0.0.3"):  # two pods: one port, two addresses
        pod = tmp / address
        pod.mkdir()
        hosts[address] = EnginesHost(pod, [{"name": "deepseek-r1", "path": path, "context": 512, "slots": 8, "engine": {
            "kind": "vllm", "simulate": True, "host": address, "port": port, "api_key_file": str(key_file)}}],
            env={"SEEKSTACK_SIM_OPTIONS": "--itl-ms 20"})
    for host in hosts.values():
        host.wait_ready()
    dns = DnsServer()
    dns.zone.records[NAME] = ["127.0.0.2"]
    gateway = Server(tmp, {"models": [{"name": "deepseek-r1", "context": 512, "engine": {
        "kind": "vllm", "discover": f"http://{NAME}:{port}", "api_key_file": str(key_file)}}],
        "supervisor": {"discover_every": 0.3, "dns_servers": [dns.address]}}, command="gateway").start()
    yield {"gateway": gateway, "dns": dns, "port": port}
    gateway.stop()
    dns.stop()
    for host in hosts.values():
        host.stop()


def endpoints(gateway) -> dict[str, str]:
    return {r["base_url"]: r["state"] for r in gateway.replicas()}


async def streams(gateway, n: int, tokens: int = 60) -> list[str]:
    client = AsyncOpenAI(base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0, timeout=60)

    async def one() -> str:
        stream = await client.chat.completions.create(model="deepseek-r1", stream=True, max_tokens=tokens,
                                                      messages=[{"role": "user", "content": "Count."}])
        finish, pieces = None, 0
        async for chunk in stream:
            if chunk.choices:
                pieces += 1
                finish = chunk.choices[0].finish_reason or finish
        return finish if pieces > 1 else "empty"

    return await asyncio.gather(*(one() for _ in range(n)))


def test_an_address_added_then_removed_adds_an_endpoint_then_drains_it(found):
    gateway, dns, port = found["gateway"], found["dns"], found["port"]
    first, second = f"http://127.0.0.2:{port}", f"http://127.0.0.3:{port}"
    assert endpoints(gateway) == {first: "ready"}

    dns.zone.records[NAME] = ["127.0.0.2", "127.0.0.3"]  # a scale-up: a second pod
    assert wait_until(lambda: endpoints(gateway) == {first: "ready", second: "ready"}, 10), endpoints(gateway)

    async def streams_while_one_goes() -> list[str]:
        running = asyncio.ensure_future(streams(gateway, 8))
        await asyncio.sleep(0.5)  # every stream under way, spread over both endpoints
        dns.zone.records[NAME] = ["127.0.0.3"]  # the first pod goes (a rolling update)
        return await running

    finished = asyncio.run(streams_while_one_goes())
    assert len(finished) == 8 and set(finished) <= {"stop", "length"}, finished
    # none cut (and none resumed elsewhere): the endpoint that went drained its streams first
    metrics = gateway.http.get("/metrics").text
    assert not [line for line in metrics.splitlines() if line.startswith("seekstack_streams_resumed_total{")
                and not line.endswith(" 0.0")], metrics
    assert wait_until(lambda: endpoints(gateway) == {second: "ready"}, 10), endpoints(gateway)
    assert set(asyncio.run(streams(gateway, 2, tokens=5))) <= {"stop", "length"}


def test_a_dns_outage_keeps_the_endpoints_and_no_addresses_leave_none(found):
    gateway, dns, port = found["gateway"], found["dns"], found["port"]
    dns.zone.records[NAME] = ["127.0.0.3"]
    assert wait_until(lambda: list(endpoints(gateway)) == [f"http://127.0.0.3:{port}"], 10)
    dns.stop()  # the resolver is away: lookups time out
    time.sleep(3)
    assert list(endpoints(gateway)) == [f"http://127.0.0.3:{port}"]
    assert asyncio.run(streams(gateway, 1, tokens=5))[0] in ("stop", "length")
    assert f"engine discovery: looking up {NAME} failed" in gateway.log_path.read_text()

    del dns.zone.records[NAME]  # back, and the name is gone: every pod gone
    dns.start()
    assert wait_until(lambda: endpoints(gateway) == {}, 10), endpoints(gateway)
    refused = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {gateway.key}"},
                         json={"model": "deepseek-r1", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]},
                         timeout=30)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "engine_unavailable", refused.text
    assert refused.headers["retry-after"] == "2"
    assert gateway.http.get("/readyz").status_code == 503  # its only model has nowhere to go
    dns.zone.records[NAME] = ["127.0.0.2"]  # a pod again
    assert wait_until(lambda: endpoints(gateway) == {f"http://127.0.0.2:{port}": "ready"}, 10), endpoints(gateway)
    assert asyncio.run(streams(gateway, 1, tokens=5))[0] in ("stop", "length")
    assert "engine discovery: " + NAME + " answers again" in gateway.log_path.read_text()
