"""Engines behind TLS signed by a private CA (a bank's, a hospital's): HAProxy terminates TLS in
front of a simulated vLLM (the simulator stands in: no GPU here), as docs/architecture.md
suggests where the network between gateways and engines is not private.

A gateway given the CA (``engine.ca_file``) serves through it, streams included; one without
it refuses the engine (its certificate is not one the system trusts); a CA file that is not
one stops the gateway at start in one line.
"""

from __future__ import annotations

import shutil
import socket
import subprocess

import httpx
import openai
import pytest
import yaml
from conftest import SEEKSTACK, Server, free_port, start_sim
from pki import private_ca
from test_supervision import wait_until


TERMINATOR = """global
    maxconn 256
defaults
    mode tcp
    timeout connect 1s
    timeout client 60s
    timeout server 60s
frontend tls
    bind 127.0.0.1:{port} ssl crt {pem}
    default_backend engine
backend engine
    server sim 127.0.0.1:{engine_port}
"""


@pytest.fixture(scope="module")
def engine_behind_tls(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine-tls")
    ca, pem = private_ca(tmp)
    sim, sim_port = start_sim("--dialect", "vllm", "--model", "m")
    port = free_port()
    (tmp / "terminator.cfg").write_text(TERMINATOR.format(port=port, pem=pem, engine_port=sim_port))
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    proxy = subprocess.Popen([haproxy, "-db", "-f", str(tmp / "terminator.cfg")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    assert wait_until(lambda: _listening(port), 10), "haproxy did not start listening"
    yield {"url": f"https://127.0.0.1:{port}", "ca": ca, "tmp": tmp}
    proxy.terminate()
    proxy.wait(10)
    sim.kill()


def model(url, **engine):
    return [{"name": "m", "context": 4096, "engine": {"kind": "vllm", "endpoints": [url], **engine}}]


def test_a_gateway_given_the_private_ca_serves_through_tls(engine_behind_tls, tmp_path):
    gateway = Server(tmp_path, {"models": model(engine_behind_tls["url"], ca_file=str(engine_behind_tls["ca"]))},
                     command="gateway").start()
    try:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key_path.read_text().strip())
        answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
        assert answer.choices[0].message.content
        for _ in range(3):  # a stream opens a connection of its own each time
            chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}],
                                                         max_tokens=8, stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finally:
        gateway.stop()


def test_a_gateway_without_the_ca_refuses_the_engine(engine_behind_tls, tmp_path):
    config, port = tmp_path / "gateway.yaml", free_port()
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "models": model(engine_behind_tls["url"])}))
    log = tmp_path / "gateway.log"
    gateway = subprocess.Popen([*SEEKSTACK, "gateway", "--config", str(config), "--port", str(port)],
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60)  # up, and not ready: no engine
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0,
                               api_key=(tmp_path / "state" / "admin.key").read_text().strip())
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
        assert refused.value.status_code == 503 and refused.value.code == "engine_unavailable"
        replicas = httpx.get(f"http://127.0.0.1:{port}/admin/v1/replicas",  # what `seekstack ps` shows: why
                             headers={"Authorization": f"Bearer {client.api_key}"}).json()["data"]
        why = replicas[0]["health"]["reason"]
        assert "TLS certificate is not trusted" in why and "engine.ca_file" in why, why
    finally:
        gateway.terminate()
        gateway.wait(30)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_a_ca_file_that_is_not_one_stops_the_gateway_in_one_line(engine_behind_tls, tmp_path):
    bogus = tmp_path / "not-a-ca.pem"
    bogus.write_text("hello\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"),
                                      "models": model(engine_behind_tls["url"], ca_file=str(bogus))}))
    done = subprocess.run([*SEEKSTACK, "gateway", "--config", str(config), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "engine.ca_file: cannot load CA certificates from" in done.stderr and "Traceback" not in done.stderr
