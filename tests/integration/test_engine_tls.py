"""Engines behind TLS signed by a private CA (a bank's, a hospital's): HAProxy terminates TLS in
front of a simulated vLLM (the simulator stands in: no GPU here), as docs/architecture.md
suggests where the network between gateways and engines is not private.

A gateway given the CA (``engine.ca_file``) serves through it, streams included; one without
it refuses the engine (its certificate is not one the system trusts); a CA file that is not
one stops the gateway at start in one line. A second listener asks for a client certificate
signed by the same CA (mutual TLS): a gateway with ``engine.cert_file`` / ``key_file`` is
served, one without is refused, and a key file others can read stops the gateway at start.
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
frontend mutual
    bind 127.0.0.1:{mutual_port} ssl crt {pem} verify required ca-file {ca}
    default_backend engine
backend engine
    server sim 127.0.0.1:{engine_port}
"""


@pytest.fixture(scope="module")
def engine_behind_tls(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine-tls")
    pki = private_ca(tmp)
    sim, sim_port = start_sim("--dialect", "vllm", "--model", "m")
    port, mutual_port = free_port(), free_port()
    (tmp / "terminator.cfg").write_text(TERMINATOR.format(port=port, mutual_port=mutual_port, pem=pki["engine"],
                                                          ca=pki["ca"], engine_port=sim_port))
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    proxy = subprocess.Popen([haproxy, "-db", "-f", str(tmp / "terminator.cfg")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    assert wait_until(lambda: _listening(port) and _listening(mutual_port), 10), "haproxy did not start listening"
    yield {"url": f"https://127.0.0.1:{port}", "mutual_url": f"https://127.0.0.1:{mutual_port}", **pki}
    proxy.terminate()
    proxy.wait(10)
    sim.kill()


def chat_and_stream(gateway: Server) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key_path.read_text().strip())
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    assert answer.choices[0].message.content
    for _ in range(3):  # streams open connections of their own
        chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}],
                                                     max_tokens=8, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def refused_with(engine: dict, tmp_path) -> str:
    """Start a gateway whose engine it cannot use; check a chat gets 503; return the replica's reason."""
    config, port = tmp_path / "gateway.yaml", free_port()
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "models": model(**engine)}))
    gateway = subprocess.Popen([*SEEKSTACK, "gateway", "--config", str(config), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 60)  # up, and not ready: no engine
        key = (tmp_path / "state" / "admin.key").read_text().strip()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
        assert refused.value.status_code == 503 and refused.value.code == "engine_unavailable"
        replicas = httpx.get(f"http://127.0.0.1:{port}/admin/v1/replicas",  # what `seekstack ps` shows: why
                             headers={"Authorization": f"Bearer {key}"}).json()["data"]
        return replicas[0]["health"]["reason"]
    finally:
        gateway.terminate()
        gateway.wait(30)


def start_refused(engine: dict, tmp_path) -> str:
    """Start a gateway with ``engine``: it must stop at once, in one line; its stderr."""
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "models": model(**engine)}))
    done = subprocess.run([*SEEKSTACK, "gateway", "--config", str(config), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def model(url, **engine):
    return [{"name": "m", "context": 4096, "engine": {"kind": "vllm", "endpoints": [url], **engine}}]


def test_a_gateway_given_the_private_ca_serves_through_tls(engine_behind_tls, tmp_path):
    gateway = Server(tmp_path, {"models": model(engine_behind_tls["url"], ca_file=str(engine_behind_tls["ca"]))},
                     command="gateway").start()
    try:
        chat_and_stream(gateway)
    finally:
        gateway.stop()


def test_a_gateway_without_the_ca_refuses_the_engine(engine_behind_tls, tmp_path):
    why = refused_with({"url": engine_behind_tls["url"]}, tmp_path)
    assert "TLS certificate is not trusted" in why and "engine.ca_file" in why, why


def test_a_ca_file_that_is_not_one_stops_the_gateway_in_one_line(engine_behind_tls, tmp_path):
    bogus = tmp_path / "not-a-ca.pem"
    bogus.write_text("hello\n")
    stderr = start_refused({"url": engine_behind_tls["url"], "ca_file": str(bogus)}, tmp_path)
    assert "engine.ca_file: cannot load CA certificates from" in stderr


def test_mutual_tls_a_gateway_with_its_client_certificate_is_served(engine_behind_tls, tmp_path):
    tls = {"ca_file": str(engine_behind_tls["ca"]), "cert_file": str(engine_behind_tls["client"]),
           "key_file": str(engine_behind_tls["client_key"])}
    gateway = Server(tmp_path, {"models": model(engine_behind_tls["mutual_url"], **tls)}, command="gateway").start()
    try:
        chat_and_stream(gateway)
    finally:
        gateway.stop()


def test_mutual_tls_a_gateway_without_a_client_certificate_is_refused(engine_behind_tls, tmp_path):
    why = refused_with({"url": engine_behind_tls["mutual_url"], "ca_file": str(engine_behind_tls["ca"])}, tmp_path)
    assert "CERTIFICATE_REQUIRED" in why and "engine.cert_file" in why, why


def test_a_client_key_others_can_read_stops_the_gateway_in_one_line(engine_behind_tls, tmp_path):
    exposed = tmp_path / "exposed.key"
    exposed.write_bytes(engine_behind_tls["client_key"].read_bytes())
    exposed.chmod(0o644)
    stderr = start_refused({"url": engine_behind_tls["mutual_url"], "ca_file": str(engine_behind_tls["ca"]),
                            "cert_file": str(engine_behind_tls["client"]), "key_file": str(exposed)}, tmp_path)
    assert "engine.key_file:" in stderr and "can be read by other users" in stderr and "chmod 600" in stderr


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
