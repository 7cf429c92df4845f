"""What KEDA would scale on reads what the gateways do: `seekstack deploy kubernetes` renders an
autoscaled model's ScaledObject and the gateways' ServiceMonitor; here the rendered engines config
and two gateways on the rendered gateway config run for real (simulated vLLM: no GPU here, the
simulator stands in), a real Prometheus scrapes both gateways as that ServiceMonitor says — with
the key the printed command creates — and runs the ScaledObject's own queries. While 3 streams
run through each gateway on one engine of 2 slots (each gateway: 2 in flight, 1 queued) the
demand query reads 6, summed over the gateways, and the engine's KV-cache use, which both
gateways report, is counted once; the HPA (its algorithm, for AverageValue metrics) would ask
for 4 pods, and when the streams end, for the minimum. KEDA and the HPA themselves need a
cluster, which this machine does not have."""

from __future__ import annotations

import math
import secrets
import shlex
import shutil
import subprocess
import threading
import time

import httpx
import pytest
import yaml
from openai import OpenAI

from conftest import SEEKSTACK, Server, free_port
from hfdir import make_hf_dir
from test_fleet import EnginesHost

from seekstack import kubernetes

WINDOW = 4  # the autoscale window, seconds: the queries average over it
STREAMS = 6


def desired_replicas(current: int, values: dict[str, float], scaled: dict) -> int:
    """The HPA's answer for AverageValue metrics (the Kubernetes docs' algorithm): per trigger,
    ceil(value / threshold) unless the ratio is within the 10 % tolerance; the highest, within bounds."""
    proposals = []
    for trigger in scaled["triggers"]:
        target = float(trigger["metadata"]["threshold"])
        value = values[trigger["name"]]
        ratio = value / (target * current)
        proposals.append(current if abs(ratio - 1) <= 0.1 else math.ceil(value / target))
    return min(max(max(proposals), scaled["minReplicaCount"]), scaled["maxReplicaCount"])


class Prometheus:
    """A real Prometheus (Debian's) scraping one target every second."""

    def __init__(self, tmp, job: dict, port: int):
        self.port = port
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                          "scrape_configs": [job]}))
        self.log = tmp / "prometheus.log"
        self.proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready:\n{self.log.read_text()}")

    def query(self, promql: str) -> list[dict]:
        answer = httpx.get(self.url + "/api/v1/query", params={"query": promql}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, promql: str) -> float:
        [sample] = self.query(promql)
        return float(sample["value"][1])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def test_the_scaledobjects_queries_read_the_gateways_load_from_a_real_prometheus(tmp_path, postgres):
    prometheus_port = free_port()
    (tmp_path / "seekstack.yaml").write_text(yaml.safe_dump({
        "storage": {"url": postgres.new_database()}, "quotas": {"store": "memory"},
        "models": [{"name": "deepseek-r1", "path": str(make_hf_dir(tmp_path / "r1")), "context": 1024, "slots": 2,
                    "engine": {"kind": "vllm", "simulate": True},
                    "autoscale": {"min_replicas": 1, "max_replicas": 8, "window": WINDOW, "sample_every": 1}}]}))
    done = subprocess.run([*SEEKSTACK, "deploy", "kubernetes", "--config", str(tmp_path / "seekstack.yaml"),
                           "--output", str(tmp_path / "k8s"), "--gateways", "1", "--models-dir", str(tmp_path),
                           "--models-claim", "models", "--prometheus-url", f"http://127.0.0.1:{prometheus_port}",
                           "--prometheus-operator"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    docs = [doc for path in (tmp_path / "k8s").glob("*.yaml") for doc in yaml.safe_load_all(path.read_text()) if doc]
    configs = {d["metadata"]["name"]: yaml.safe_load(d["data"]["seekstack.yaml"]) for d in docs if d["kind"] == "ConfigMap"}
    [scaled] = [d["spec"] for d in docs if d["kind"] == "ScaledObject"]
    [monitor] = [d["spec"] for d in docs if d["kind"] == "ServiceMonitor"]
    queries = {t["name"]: t["metadata"]["query"] for t in scaled["triggers"]}
    key = {kubernetes.ENGINE_KEY_ENV: secrets.token_hex(32)}

    [engine_model] = configs["engines-deepseek-r1"]["models"]
    port = free_port()
    engine_model["engine"].update(host="127.0.0.1", port=port)
    engines = EnginesHost(tmp_path, [engine_model], env={**key, "SEEKSTACK_SIM_OPTIONS": "--itl-ms 40 --output-len 200"})
    prometheus = None
    try:
        engines.wait_ready()
        config = configs["seekstack-gateway"]
        config["models"][0]["engine"]["discover"] = f"http://127.0.0.1:{port}"  # what the Service's name resolves to
        config.pop("state_dir")
        config["server"]["host"] = "127.0.0.1"
        gateway = Server(tmp_path, config, name="gateway", command="gateway")
        gateway.env = key
        gateway.start()
        other = Server(tmp_path, config, name="gateway-b", command="gateway")  # the StatefulSet's second pod
        other.env = key
        pepper = tmp_path / "gateway-b-state" / "pepper.key"  # the pepper Secret, as the init container installs it
        pepper.parent.mkdir(mode=0o700)
        shutil.copy2(tmp_path / "gateway-state" / "pepper.key", pepper)
        other.start()

        # the metrics key, made as the command `deploy kubernetes` printed for the Secret runs it in the
        # gateway pod (here the gateway's address and key are given: its config is not at the pod's path)
        [line] = [ln for ln in done.stdout.splitlines() if "seekstack-metrics" in ln]
        create = shlex.split(line.split(" -- ", 1)[1].split("|", 1)[0])
        assert create[:5] == ["seekstack", "keys", "create", "--config", "/etc/seekstack/seekstack.yaml"]
        made = subprocess.run([*SEEKSTACK, *create[1:3], *create[5:], "--url", gateway.url, "--api-key",
                               (gateway.key_path.with_name("security-admin.key")).read_text().strip()],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        token = yaml.safe_load(made.stdout)["key"]
        assert httpx.get(gateway.url + "/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        refused = httpx.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                             json={"model": "deepseek-r1", "messages": [{"role": "user", "content": "hi"}]})
        assert refused.status_code == 403  # it reads /metrics and nothing else

        # the scrape the ServiceMonitor asks for, as the operator writes it (it adds the namespace label)
        [endpoint] = monitor["endpoints"]
        prometheus = Prometheus(tmp_path, {
            "job_name": "seekstack-gateways", "metrics_path": endpoint["path"], "scheme": endpoint["scheme"],
            "authorization": {"type": endpoint["authorization"]["type"], "credentials": token},
            "static_configs": [{"targets": [f"127.0.0.1:{g.port}" for g in (gateway, other)],
                                "labels": {"namespace": "seekstack"}}]},
            prometheus_port)
        assert {t["metadata"]["serverAddress"] for t in scaled["triggers"]} == {prometheus.url}  # where KEDA asks
        answers: list[int] = []

        def stream(url: str) -> None:
            client = OpenAI(base_url=url + "/v1", api_key=gateway.key, max_retries=0, timeout=120)
            chunks = client.chat.completions.create(model="deepseek-r1", stream=True, max_tokens=200,
                                                    messages=[{"role": "user", "content": "Count slowly."}])
            answers.append(sum(1 for c in chunks if c.choices and c.choices[0].delta.content))

        threads = [threading.Thread(target=stream, args=(g.url,)) for g in (gateway, other) for _ in range(STREAMS // 2)]
        for t in threads:
            t.start()
        time.sleep(WINDOW + 2)  # a full window of samples with every stream on
        in_flight = prometheus.value(queries["demand"])
        kv = prometheus.value(queries["kv-cache"])
        # each gateway: 2 in flight (its limit on the endpoint: the engine's 2 slots), 1 in its queue
        assert in_flight == pytest.approx(STREAMS, abs=0.6), prometheus.query("seekstack_queue_waiting")
        assert {s["metric"]["instance"] for s in prometheus.query("seekstack_requests_in_flight")} == \
            {f"127.0.0.1:{g.port}" for g in (gateway, other)}
        # one engine, reported by both gateways under its own address, counted once
        reported = prometheus.query("seekstack_endpoint_kv_cache_usage")
        assert len(reported) == 2 and len({s["metric"]["address"] for s in reported}) == 1
        assert 0 < kv <= 1
        # threshold 2 slots × 0.85 / 1.1 = 1.55 requests a pod: 6 ask for 4 pods
        assert desired_replicas(1, {"demand": in_flight, "kv-cache": kv}, scaled) == 4
        for t in threads:
            t.join(120)
        assert len(answers) == STREAMS and all(answers)
        time.sleep(WINDOW + 2)
        assert prometheus.value(queries["demand"]) == 0
        assert desired_replicas(4, {"demand": 0.0, "kv-cache": prometheus.value(queries["kv-cache"])}, scaled) == 1
        other.stop()
        gateway.stop()
    finally:
        if prometheus is not None:
            prometheus.stop()
        engines.stop()
