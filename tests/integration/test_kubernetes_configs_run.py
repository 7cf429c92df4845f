"""The configs `seekstack deploy kubernetes` puts in the pods run: the engines pod's config under a
real `seekstack engines`, the gateway pod's under a real `seekstack gateway` on a real
PostgreSQL, the only changes being what the cluster provides (the engines' Service name resolves to a
loopback address, the fixed ports free ones, the state directory a temporary one, the
engine-key Secret an environment variable). A request through the official `openai` client
goes gateway → engine with the key the Secret holds, and the engines pod's memory request (from
the planner) covers what its processes use."""

from __future__ import annotations

import secrets
import subprocess

import psutil
import yaml
from openai import OpenAI

from conftest import SEEKSTACK, Server, free_port
from test_fleet import EnginesHost

from seekstack import kubernetes


def test_the_rendered_gateway_and_engines_configs_serve_a_request(tmp_path, postgres):
    url = postgres.new_database()
    (tmp_path / "seekstack.yaml").write_text(yaml.safe_dump({
        "storage": {"url": url}, "quotas": {"store": "memory"},
        "models": [{"name": "smollm2", "source": "embedded", "context": 512, "slots": 2, "threads": 1}]}))
    done = subprocess.run([*SEEKSTACK, "deploy", "kubernetes", "--config", str(tmp_path / "seekstack.yaml"),
                           "--output", str(tmp_path / "k8s"), "--gateways", "1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    docs = [doc for path in (tmp_path / "k8s").glob("*.yaml") for doc in yaml.safe_load_all(path.read_text()) if doc]
    configs = {doc["metadata"]["name"]: yaml.safe_load(doc["data"]["seekstack.yaml"]) for doc in docs
               if doc["kind"] == "ConfigMap"}
    [engines_pod] = [doc["spec"]["template"]["spec"]["containers"][0] for doc in docs
                     if doc["kind"] == "StatefulSet" and doc["metadata"]["name"] == "engines-smollm2"]
    requested = engines_pod["resources"]["requests"]["memory"]
    assert requested.endswith("Mi")
    key = {kubernetes.ENGINE_KEY_ENV: secrets.token_hex(32)}  # the engine-key Secret, as envFrom gives it

    [engine_model] = configs["engines-smollm2"]["models"]
    port = free_port()
    engine_model["engine"]["port"] = port
    engine_model["engine"]["host"] = "127.0.0.1"
    engines = EnginesHost(tmp_path, [engine_model], env=key)
    try:
        engines.wait_ready()
        gateway_config = configs["seekstack-gateway"]
        [model] = gateway_config["models"]
        assert model["engine"]["discover"] == f"http://engines-smollm2.seekstack.svc.cluster.local:{kubernetes.ENGINE_PORT}"
        model["engine"]["discover"] = f"http://127.0.0.1:{port}"  # what the Service's name resolves to
        gateway_config.pop("state_dir")
        gateway_config["server"]["host"] = "127.0.0.1"
        gateway = Server(tmp_path, gateway_config, name="gateway", command="gateway")
        gateway.env = key
        gateway.start()
        client = OpenAI(base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0, timeout=60)
        answer = client.chat.completions.create(model="smollm2", max_tokens=8,
                                                messages=[{"role": "user", "content": "Hello"}])
        assert answer.choices[0].message.content and answer.usage.completion_tokens > 0
        # the pod's memory request (the planner's, for this model, context and slots) covers what it uses
        pod = psutil.Process(engines.proc.pid)
        used = sum(p.memory_info().rss for p in [pod, *pod.children(recursive=True)])
        assert used <= int(requested[:-2]) * 2**20, (used / 2**20, requested)
        gateway.stop()
    finally:
        engines.stop()
