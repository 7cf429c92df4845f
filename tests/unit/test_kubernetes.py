"""`seekstack deploy kubernetes`: the Kustomize directory rendered from a config is built by the
real `kubectl kustomize`, every object validates strictly against Kubernetes 1.32's schemas
(kubernetes-validate), the configs it puts in the pods pass seekstack's own checks for their
host roles, and the names tie together (the engines' DNS names ↔ StatefulSets and headless Services,
probes, secrets, network policy). What a cluster cannot take is refused, every problem at once."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from seekstack import kubernetes
from seekstack.config import Settings, check_settings, load_settings
from seekstack.embedded import embedded_model_path
from seekstack.hostroles import role_problems
from seekstack.observability.alerts import rule_file

from conftest import SEEKSTACK

CONFIG = """
storage: {url: "postgresql://seekstack@db.example/seekstack"}
quotas: {store: redis, redis_url: "redis://redis.example:6379/0", redis_password_env: QUOTA_REDIS_PASSWORD}
server: {drain_timeout: 45, max_body_bytes: 4194304}
roles: {analyst: {permissions: ["usage:read"]}}
audit: {dir: /srv/audit, retention_days: 400}
models:
  - {name: smollm2, source: embedded, replicas: 2, context: 1024, threads: 2}
  - {name: DeepSeek-R1, path: /models/deepseek-r1, context: 8192, engine: {kind: vllm, tensor_parallel: 4, pipeline_parallel: 2},
     fallbacks: [smollm2]}
  - {name: far, engine: {kind: openai, url: "http://10.0.0.7:8000", api_key_env: FAR_KEY}}
"""


def render(tmp_path, text: str = CONFIG, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "seekstack.yaml").write_text(text)
    return subprocess.run([*SEEKSTACK, "deploy", "kubernetes", "--config", str(tmp_path / "seekstack.yaml"),
                           "--output", str(tmp_path / "k8s"), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def objects(tmp_path) -> dict[tuple[str, str], dict]:
    done = render(tmp_path, CONFIG, "--models-claim", "models", "--namespace", "llm", "--gateways", "3")
    assert done.returncode == 0, done.stderr
    assert "kubectl -n llm create secret generic seekstack-pepper" in done.stdout
    built = subprocess.run(["kubectl", "kustomize", str(tmp_path / "k8s")], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    docs = list(yaml.safe_load_all(built.stdout))
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32", strict=True)  # raises on any unknown or mistyped field
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "llm"
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def pod_config(objects, name: str, tmp_path):
    path = tmp_path / f"{name}.yaml"
    path.write_text(objects["ConfigMap", name]["data"]["seekstack.yaml"])
    return load_settings(path)


def test_the_pods_configs_pass_seekstacks_checks_for_their_roles(objects, tmp_path, monkeypatch):
    for name in (kubernetes.ENGINE_KEY_ENV, "FAR_KEY", "QUOTA_REDIS_PASSWORD"):  # the Secrets, in the pods' environment
        monkeypatch.setenv(name, "k" * 64)
    gateway = pod_config(objects, "seekstack-gateway", tmp_path)
    assert role_problems(gateway, "gateway") == [] and check_settings(gateway) == []
    assert (gateway.server.host, gateway.server.port, gateway.server.drain_timeout) == ("0.0.0.0", 8800, 45)
    assert gateway.audit.dir is None and gateway.audit.retention_days == 400  # each pod's chain on its own volume
    assert str(gateway.state_path) == kubernetes.STATE_DIR and "analyst" in gateway.roles
    assert next(m for m in gateway.models if m.name == "DeepSeek-R1").fallbacks == ["smollm2"]  # the gateways choose
    far = next(m for m in gateway.models if m.name == "far")
    assert far.engine.url == "http://10.0.0.7:8000" and far.engine.api_key_env == "FAR_KEY"  # elsewhere: as written
    for name in ("engines-smollm2", "engines-deepseek-r1"):
        engines = pod_config(objects, name, tmp_path)
        assert role_problems(engines, "engines") == []
        [model] = engines.models
        assert (model.replicas, model.engine.host, model.engine.port) == (1, "0.0.0.0", kubernetes.ENGINE_PORT)
        assert model.engine.api_key_env == kubernetes.ENGINE_KEY_ENV


def test_each_gateway_finds_its_engines_by_their_headless_services_name(objects, tmp_path):
    gateway = pod_config(objects, "seekstack-gateway", tmp_path)
    found = {m.name: m for m in gateway.models if m.engine.discover}
    assert set(found) == {"smollm2", "DeepSeek-R1"}
    for model in found.values():
        name = f"engines-{kubernetes.slug(model.name)}"
        sts, service = objects["StatefulSet", name], objects["Service", name]
        assert sts["spec"]["serviceName"] == name and service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"] == sts["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["ports"][0]["port"] == kubernetes.ENGINE_PORT
        # the Service's DNS name has one address per pod: `kubectl scale` is followed without a reload
        assert model.engine.discover == f"http://{name}.llm.svc.cluster.local:{kubernetes.ENGINE_PORT}"
        assert model.engine.api_key_env == kubernetes.ENGINE_KEY_ENV
        policy = objects["NetworkPolicy", name]["spec"]
        assert policy["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
        gateway_labels = objects["StatefulSet", "seekstack-gateway"]["spec"]["template"]["metadata"]["labels"]
        assert policy["ingress"] == [{"from": [{"podSelector": {"matchLabels": gateway_labels}}],
                                      "ports": [{"port": kubernetes.ENGINE_PORT, "protocol": "TCP"}]}]
    assert objects["StatefulSet", "engines-smollm2"]["spec"]["replicas"] == 2
    r1 = objects["StatefulSet", "engines-deepseek-r1"]["spec"]["template"]["spec"]
    assert r1["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 8}  # tensor 4 × pipeline 2
    assert r1["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in r1["containers"][0]["volumeMounts"]
    small = objects["StatefulSet", "engines-smollm2"]["spec"]["template"]["spec"]["containers"][0]
    assert "limits" not in small["resources"] and small["resources"]["requests"]["cpu"] == "2"
    # a llama.cpp pod asks for its plan: weights (the file), KV, overhead, prompt cache, and seekstack itself
    memory = int(small["resources"]["requests"]["memory"].removesuffix("Mi")) * 2**20
    assert memory > embedded_model_path().stat().st_size + 256 * 2**20 + kubernetes.HOST_PROCESS
    assert r1["containers"][0]["resources"]["requests"]["memory"] == "2Gi"  # vLLM: its GPUs hold the model
    # slots left unset are fixed as the planner chose them, the same in the engines' and the gateway's config
    [engines] = yaml.safe_load(objects["ConfigMap", "engines-smollm2"]["data"]["seekstack.yaml"])["models"]
    assert (engines["context"], engines["slots"], engines["prompt_cache_mib"]) == (1024, 4, 256)
    assert (gateway.model("smollm2").context, gateway.model("smollm2").slots) == (1024, 4)


def test_the_gateways_are_a_statefulset_with_a_volume_each_probes_a_drain_and_no_root(objects):
    sts = objects["StatefulSet", "seekstack-gateway"]["spec"]
    pod = sts["template"]["spec"]
    [container] = pod["containers"]
    assert sts["replicas"] == 3 and [c["metadata"]["name"] for c in sts["volumeClaimTemplates"]] == ["state"]
    assert {"name": "state", "mountPath": kubernetes.STATE} in container["volumeMounts"]
    assert container["args"] == ["gateway", "--config", "/etc/seekstack/seekstack.yaml"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["terminationGracePeriodSeconds"] >= 45 + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # the pepper from a Secret, installed 0600 in the state directory before the gateway starts
    [init] = pod["initContainers"]
    assert f"install -m 600 /etc/seekstack/pepper/pepper.key {kubernetes.STATE_DIR}/pepper.key" in init["command"][-1]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    secrets |= {e["secretRef"]["name"] for e in container["envFrom"]}
    secrets |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert secrets == {"seekstack-pepper", "seekstack-engine-key", "seekstack-postgres", "seekstack-redis"}
    assert {"name": "QUOTA_REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "seekstack-redis", "key": "password"}}} \
        in container["env"]
    # the image sets SEEKSTACK_STATE_DIR for `docker run`; a pod sets the one its config names, or the
    # image's would win over the config (and the pepper the init container installs would be missed)
    for name in ("seekstack-gateway", "engines-smollm2"):
        env = objects["StatefulSet", name]["spec"]["template"]["spec"]["containers"][0]["env"]
        config = yaml.safe_load(objects["ConfigMap", name]["data"]["seekstack.yaml"])
        assert {"name": "SEEKSTACK_STATE_DIR", "value": kubernetes.STATE_DIR} in env
        assert config["state_dir"] == kubernetes.STATE_DIR
    service = objects["Service", "seekstack"]["spec"]
    assert service["selector"] == sts["selector"]["matchLabels"] and service["ports"][0]["targetPort"] == "http"
    assert objects["PodDisruptionBudget", "seekstack-gateway"]["spec"]["maxUnavailable"] == 1


def test_what_a_cluster_cannot_take_is_refused_every_problem_at_once(tmp_path):
    bad = """
quotas: {store: memory}
models:
  - {name: a, source: embedded, autoscale: {min_replicas: 1, max_replicas: 3}}
  - {name: b, path: /opt/models/b.gguf}
  - {name: c, engine: {kind: openai, url: "http://10.0.0.7:8000", api_key_file: /etc/keys/c}}
  - {name: d, source: embedded, keep_alive: 300}
"""
    done = render(tmp_path, bad, "--models-claim", "models")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    for problem in ("cannot render for Kubernetes: 6 problem(s)", "storage.url: the gateways on a cluster share a PostgreSQL",
                    "quotas.store: several gateways count quotas together in Redis",
                    "models[0] (a): autoscale on a cluster is KEDA's, on the gateways' metrics — pass --prometheus-url URL",
                    "models[1] (b): path /opt/models/b.gguf is not under /models",
                    "models[2] (c): engine.api_key_file /etc/keys/c is a file on this host — use api_key_env",
                    "models[3] (d): keep_alive unloads a model on one host; on a cluster its pods stay up"):
        assert problem in done.stderr, done.stderr
    assert not (tmp_path / "k8s").exists()  # nothing written
    unread = render(tmp_path, bad.replace("quotas: {store: memory}", "observability: {metrics: false}"),
                    "--models-claim", "models", "--gateways", "1", "--prometheus-url", "prometheus:9090")
    assert unread.returncode == 1 and "cannot render for Kubernetes: 6 problem(s)" in unread.stderr
    assert "--prometheus-url prometheus:9090: give Prometheus' http:// or https:// URL" in unread.stderr
    assert "observability.metrics: false — the gateways serve no /metrics for Prometheus (and KEDA)" in unread.stderr
    # DeepSeek-R1 over two 8-GPU nodes (tensor 8 × pipeline 2) would be one pod asking for 16: never scheduled
    wide = render(tmp_path, CONFIG.replace("tensor_parallel: 4", "tensor_parallel: 8"), "--models-claim", "models")
    assert wide.returncode == 1 and "cannot render for Kubernetes: 1 problem(s)" in wide.stderr
    assert "models[1] (DeepSeek-R1): one engine needs tensor_parallel × pipeline_parallel = 16 GPUs, more than a " \
           "node has (--gpus-per-node 8)" in wide.stderr
    assert render(tmp_path, CONFIG.replace("tensor_parallel: 4", "tensor_parallel: 8"), "--models-claim", "models",
                  "--gpus-per-node", "16").returncode == 0
    no_volume = render(tmp_path, CONFIG)
    assert no_volume.returncode == 1 and "pass --models-claim NAME" in no_volume.stderr


def test_a_rendering_replaces_an_earlier_one_whole_and_nothing_else(tmp_path):
    one = CONFIG.replace("replicas: 2", "replicas: 1")
    assert render(tmp_path, one, "--models-claim", "models").returncode == 0
    (tmp_path / "k8s" / "engines-old-model.yaml").write_text("kind: ConfigMap\n")  # from an earlier config
    assert render(tmp_path, CONFIG, "--models-claim", "models").returncode == 0
    assert not (tmp_path / "k8s" / "engines-old-model.yaml").exists()
    assert "replicas: 2" in (tmp_path / "k8s" / "engines-smollm2.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k8s", "seekstack.yaml"]  # no staging left behind
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    refused = subprocess.run([*SEEKSTACK, "deploy", "kubernetes", "--config", str(tmp_path / "seekstack.yaml"),
                              "--models-claim", "models", "--output", str(other)], capture_output=True, text=True)
    assert refused.returncode == 1 and "is not an earlier rendering" in refused.stderr
    assert [p.name for p in other.iterdir()] == ["todo.txt"]


def test_settings_from_the_environment_reach_the_pods_and_host_files_are_refused(tmp_path):
    """`SEEKSTACK_STORAGE__URL` set where the command runs: the pods have no such variable, so the
    rendered config carries it. A store model's trusted keys outside the models volume: refused."""
    text = "quotas: {store: redis, redis_url: 'redis://r:6379/0'}\nmodels: [{name: s, source: embedded}]\n"
    (tmp_path / "seekstack.yaml").write_text(text)
    env = {**os.environ, "SEEKSTACK_STORAGE__URL": "postgresql://seekstack@db/seekstack"}
    done = subprocess.run([*SEEKSTACK, "deploy", "kubernetes", "--config", str(tmp_path / "seekstack.yaml"),
                           "--output", str(tmp_path / "k8s")], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    [configmap] = [d for d in yaml.safe_load_all((tmp_path / "k8s" / "gateway.yaml").read_text()) if d["kind"] == "ConfigMap"]
    assert yaml.safe_load(configmap["data"]["seekstack.yaml"])["storage"] == {"url": "postgresql://seekstack@db/seekstack"}

    store = Settings.model_validate({"storage": {"url": "postgresql://db/s"}, "quotas": {"store": "redis", "redis_url": "redis://r"},
                                     "store": {"trusted_keys": ["/etc/seekstack/release.pub", "/models/keys/ops.pub"]},
                                     "models": [{"name": "r1", "store": "deepseek-r1@2"}]})
    raw = {"models": [{"name": "r1", "store": "deepseek-r1@2"}]}
    found = kubernetes.problems(store, raw, kubernetes.Options(models_claim="models"))
    assert found == ["store.trusted_keys: /etc/seekstack/release.pub is a file on this host — put it under /models "
                     "(the models volume) and give its path there"]


AUTOSCALED = """
storage: {url: "postgresql://seekstack@db.example/seekstack"}
quotas: {store: redis, redis_url: "redis://redis.example:6379/0"}
observability: {alerts: {error_ratio: 0.02}}
models:
  - {name: DeepSeek-R1, path: /models/deepseek-r1, context: 8192, slots: 8, replicas: 2, queue: {concurrency: 6},
     engine: {kind: vllm, tensor_parallel: 8},
     autoscale: {min_replicas: 2, max_replicas: 6, scale_up_at: 0.8, window: 120, up_cooldown: 30, down_cooldown: 3600}}
  - {name: small, source: embedded}
"""
CRDS = Path(__file__).parents[1] / "crds"
CUSTOM = ("ScaledObject", "ServiceMonitor", "PrometheusRule")


def validate_custom_resources(docs: list[dict]) -> None:
    """Against the CRDs' own schemas (KEDA 2, Prometheus Operator), with Node (`make test` installs both)."""
    checked = subprocess.run(["node", str(CRDS / "validate.mjs")], input=json.dumps(docs), capture_output=True,
                             text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_autoscaled_models_rule_becomes_a_keda_scaledobject_and_the_gateways_a_scrape_and_alert_rules(tmp_path):
    done = render(tmp_path, AUTOSCALED, "--models-claim", "models", "--namespace", "llm",
                  "--prometheus-url", "http://prometheus-operated.monitoring:9090", "--prometheus-operator")
    assert done.returncode == 0, done.stderr
    built = subprocess.run(["kubectl", "kustomize", str(tmp_path / "k8s")], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    docs = list(yaml.safe_load_all(built.stdout))
    for doc in docs:
        if doc["kind"] not in CUSTOM:
            kubernetes_validate.validate(doc, "1.32", strict=True)
    custom = [doc for doc in docs if doc["kind"] in CUSTOM]
    assert sorted(doc["kind"] for doc in custom) == sorted(CUSTOM)
    validate_custom_resources(custom)
    objects = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}

    # KEDA's HPA owns the count of the autoscaled model's pods; the other keeps its replicas
    sts = objects["StatefulSet", "engines-deepseek-r1"]
    assert "replicas" not in sts["spec"] and objects["StatefulSet", "engines-small"]["spec"]["replicas"] == 1
    scaled = objects["ScaledObject", "engines-deepseek-r1"]["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "engines-deepseek-r1"}
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"], scaled["pollingInterval"]) == (2, 6, 5)
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 30}]
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 1800}]  # the HPA's most
    triggers = {t["name"]: t for t in scaled["triggers"]}
    assert {t["metadata"]["serverAddress"] for t in triggers.values()} == {"http://prometheus-operated.monitoring:9090"}
    # one pod carries concurrency × scale_up_at requests (in flight or queued), less the HPA's 10 % tolerance
    assert float(triggers["demand"]["metadata"]["threshold"]) == pytest.approx(6 * 0.8 / 1.1, rel=1e-3)
    assert float(triggers["kv-cache"]["metadata"]["threshold"]) == pytest.approx(0.8 / 1.1, rel=1e-3)
    for trigger in triggers.values():
        assert trigger["metricType"] == "AverageValue"
        assert '{namespace="llm", model="DeepSeek-R1"}' in trigger["metadata"]["query"] and "[120s]" in trigger["metadata"]["query"]
    engines = yaml.safe_load(objects["ConfigMap", "engines-deepseek-r1"]["data"]["seekstack.yaml"])["models"][0]
    assert "autoscale" not in engines and engines["replicas"] == 1  # a pod is one replica; KEDA counts pods

    # every gateway pod scraped once (the headless Service only), with a key that reads /metrics alone
    monitor = objects["ServiceMonitor", "seekstack-gateways"]["spec"]
    selected = [name for (kind, name), doc in objects.items() if kind == "Service"
                and monitor["selector"]["matchLabels"].items() <= doc["metadata"].get("labels", {}).items()]
    assert selected == ["seekstack-gateway"]
    [endpoint] = monitor["endpoints"]
    assert endpoint["port"] in {p["name"] for p in objects["Service", "seekstack-gateway"]["spec"]["ports"]}
    assert (endpoint["path"], endpoint["scheme"]) == ("/metrics", "http")
    secret = endpoint["authorization"]["credentials"]["name"]
    after = done.stdout.split("and once a gateway is ready:")[1]  # the key is made by a running gateway
    assert f"create secret generic {secret} --from-literal=token=$(kubectl -n llm exec seekstack-gateway-0 -- " \
           "seekstack keys create --config /etc/seekstack/seekstack.yaml --name prometheus --role data_analyst " \
           "--endpoint /metrics --json | jq -r .key)" in after
    # the alert rules of `seekstack deploy alerts`, thresholds from the config, accepted by promtool
    rules = objects["PrometheusRule", "seekstack"]["spec"]
    assert rules == rule_file(load_settings(tmp_path / "seekstack.yaml").observability.alerts)
    assert "> 0.02" in json.dumps(rules)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr


def test_the_crd_check_refuses_a_mistyped_custom_resource():
    """The Node check above is not a formality: a ScaledObject with a string count and a trigger
    without a type is refused."""
    bad = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"},
           "spec": {"scaleTargetRef": {"name": "x"}, "minReplicaCount": "1", "triggers": [{"metadata": {}}]}}
    with pytest.raises(AssertionError, match="minReplicaCount must be integer"):
        validate_custom_resources([bad])


def test_max_gateways_adds_a_cpu_autoscaler_that_owns_the_gateway_count(tmp_path):
    """--max-gateways: a HorizontalPodAutoscaler (autoscaling/v2, valid for Kubernetes 1.32) over the
    gateways' StatefulSet, from --gateways to the maximum at half a core each, one pod fewer a minute
    at most; the StatefulSet leaves the count to it. Without the option, a fixed count and no autoscaler."""
    done = render(tmp_path, CONFIG, "--models-claim", "models", "--gateways", "2", "--max-gateways", "6")
    assert done.returncode == 0, done.stderr
    built = subprocess.run(["kubectl", "kustomize", str(tmp_path / "k8s")], capture_output=True, text=True, timeout=60)
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(built.stdout)}
    hpa = docs["HorizontalPodAutoscaler", "seekstack-gateway"]
    kubernetes_validate.validate(hpa, "1.32", strict=True)
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "seekstack-gateway"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 6)
    [metric] = spec["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["averageUtilization"] == 50
    assert spec["behavior"]["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    gateways = docs["StatefulSet", "seekstack-gateway"]
    assert "replicas" not in gateways["spec"]
    [container] = gateways["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == "1"  # what the utilisation is a share of
    fixed = render(tmp_path, CONFIG, "--models-claim", "models", "--gateways", "2")
    assert fixed.returncode == 0, fixed.stderr
    fixed_docs = list(yaml.safe_load_all((tmp_path / "k8s" / "gateway.yaml").read_text()))
    assert "HorizontalPodAutoscaler" not in {d["kind"] for d in fixed_docs}
    assert next(d for d in fixed_docs if d["kind"] == "StatefulSet")["spec"]["replicas"] == 2
    too_few = render(tmp_path, CONFIG, "--models-claim", "models", "--gateways", "3", "--max-gateways", "3")
    assert too_few.returncode == 1 and "--max-gateways 3: the autoscaler adds pods above --gateways (3)" in too_few.stderr
    alone = render(tmp_path, CONFIG.replace("store: redis", "store: memory"), "--models-claim", "models",
                   "--gateways", "1", "--max-gateways", "4")
    assert alone.returncode == 1 and "quotas.store: several gateways count quotas together in Redis" in alone.stderr
