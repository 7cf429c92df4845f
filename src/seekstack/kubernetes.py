"""The same config on a Kubernetes cluster: a Kustomize directory rendered from seekstack.yaml.

`seekstack deploy kubernetes` reads the config a single host would serve and splits it by host
role (:mod:`.hostroles`):

- **gateways** — a StatefulSet of `seekstack gateway` pods behind one Service. They share the
  governance database (PostgreSQL, required) and Redis (quotas, required with more than one);
  each pod keeps its own audit chain on a volume of its own, under a stable name, so a pod
  rescheduled onto another node takes its chain with it (governance/roster.py: one process per
  chain). Ready on `/readyz`, alive on `/healthz`, drained on SIGTERM
  (`server.drain_timeout`) after the Service has stopped sending to it.
- **engines** — for each model whose engines seekstack starts, a StatefulSet of
  `seekstack engines` pods, one replica each, and a headless Service; the gateways find the
  pods by that Service's DNS name (``engine.discover``), so `kubectl scale` and rolling
  updates of the engines need nothing from the gateways. vLLM and SGLang pods ask for NVIDIA
  GPUs; a NetworkPolicy lets only the gateways reach an engine's port, and each request
  carries the engine key (a Secret).

Secrets are never rendered: the pepper, the engine key and PostgreSQL's password are Secrets
the operator creates (:func:`secret_commands` prints how). What the cluster cannot take from
the config is refused with every problem at once: an autoscaled model without a Prometheus for
KEDA to read, a model file outside the models volume, a file path the pods do not have.

An autoscaled model's engines get a KEDA ScaledObject, and ``--prometheus-operator`` adds the
gateways' scrape and alert rules (:mod:`.kubernetes_metrics`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from . import __version__
from . import kubernetes_metrics as metrics
from .config import Settings
from .errors import SeekstackError
from .planner.admission import admit, derive

GATEWAY = "seekstack-gateway"
GATEWAY_PORT = 8800
ENGINE_PORT = 8000
STATE = "/var/lib/seekstack"
STATE_DIR = f"{STATE}/state"        # made 0700 by the gateway itself (the volume's root is not its own)
CONFIG_DIR = "/etc/seekstack"
ENGINE_KEY_ENV = "SEEKSTACK_ENGINE_KEY"
SECRETS = {"pepper": "seekstack-pepper", "engine_key": "seekstack-engine-key", "postgres": "seekstack-postgres",
           "redis": "seekstack-redis", "tls": "seekstack-tls"}
USER = 10001
GPU_KINDS = ("vllm", "sglang")
# the planner's view of a pod with memory to spare: a llama.cpp engine's context, slots and prompt
# cache are chosen as `serve` would, unconstrained, and its pod asks for what that plan uses
ROOMY = {"cpu_model": "", "cpu_features": [], "cores": 1, "ram_bytes": 2**50, "available_bytes": 2**50, "gpus": []}
HOST_PROCESS = 512 * 2**20  # `seekstack engines` itself, beside the engine it runs
# a model entry's fields that say how to start its engines: an engines pod's business, not a gateway's
LAUNCH_FIELDS = ("path", "source", "store", "replicas", "threads", "gpu_layers", "device", "prompt_cache_mib",
                 "rope_scaling", "quantization", "autoscale")


@dataclass
class Options:
    image: str = f"seekstack:{__version__}"
    namespace: str = "seekstack"
    gateways: int = 3
    max_gateways: int | None = None    # a HorizontalPodAutoscaler adds gateway pods up to this many (CPU)
    storage_class: str | None = None
    audit_size: str = "20Gi"
    models_claim: str | None = None  # a ReadOnlyMany volume with the model files, mounted at models_dir
    models_dir: str = "/models"
    gpus_per_node: int = 8             # one engine pod asks for at most this many GPUs
    prometheus_url: str | None = None  # the Prometheus that scrapes the gateways: KEDA reads it to autoscale
    prometheus_operator: bool = False  # render a ServiceMonitor and a PrometheusRule (its CRDs are installed)


def problems(settings: Settings, raw: dict, options: Options) -> list[str]:
    """Everything in the config a cluster rendering cannot take, one line each with the fix."""
    found = []
    url = settings.storage.url or ""
    if not url.startswith(("postgresql://", "postgres://")):
        found.append("storage.url: the gateways on a cluster share a PostgreSQL database — set a postgresql:// URL "
                     "(a SQLite file would be each pod's own)")
    if options.max_gateways is not None and options.max_gateways <= options.gateways:
        found.append(f"--max-gateways {options.max_gateways}: the autoscaler adds pods above --gateways "
                     f"({options.gateways}) — give more, or leave it out for a fixed number")
    if max(options.gateways, options.max_gateways or 0) > 1 and settings.quotas.store != "redis":
        found.append("quotas.store: several gateways count quotas together in Redis — set store: redis and "
                     "redis_url (or redis_sentinels)")
    if settings.quotas.redis_url and not settings.quotas.redis_url.startswith(("redis://", "rediss://")):
        found.append(f"quotas.redis_url: {settings.quotas.redis_url} is a path on this host — give a redis:// URL")
    for i, (model, entry) in enumerate(zip(settings.models, entries(settings, raw))):
        where = f"models[{i}] ({model.name})"
        if model.engine.launched:
            if model.autoscale is not None and options.prometheus_url is None:
                found.append(f"{where}: autoscale on a cluster is KEDA's, on the gateways' metrics — pass "
                             "--prometheus-url URL (the Prometheus that scrapes the gateways), or drop autoscale and "
                             f"scale with `kubectl scale statefulset/engines-{slug(model.name)}`")
            if model.keep_alive is not None:
                found.append(f"{where}: keep_alive unloads a model on one host; on a cluster its pods stay up — drop "
                             f"keep_alive, and scale with `kubectl scale statefulset/engines-{slug(model.name)}`")
            if gpus(model) > options.gpus_per_node:
                found.append(f"{where}: one engine needs tensor_parallel × pipeline_parallel = {gpus(model)} GPUs, more "
                             f"than a node has (--gpus-per-node {options.gpus_per_node}); engines spanning nodes are not "
                             "rendered — fit one node (`seekstack plan` names a quantization that does) or pass "
                             "--gpus-per-node")
            path = entry.get("path")
            if path is not None and options.models_claim is None:
                found.append(f"{where}: path {path} is a file the engine pods need — pass --models-claim NAME, a "
                             f"ReadOnlyMany volume holding it, mounted at {options.models_dir}")
            elif path is not None and not PurePosixPath(path).is_relative_to(options.models_dir):
                found.append(f"{where}: path {path} is not under {options.models_dir}, where the models volume is "
                             "mounted — give the path as the pods see it, or pass --models-dir")
            if model.store is not None and options.models_claim is None:
                found.append(f"{where}: a store model needs the store in the engine pods — pass --models-claim NAME "
                             f"(the store at {options.models_dir}/store)")
            if model.store is not None:
                found += [f"store.trusted_keys: {key} is a file on this host — put it under {options.models_dir} (the "
                          "models volume) and give its path there" for key in settings.store.trusted_keys
                          if not PurePosixPath(key).is_relative_to(options.models_dir)]
        elif model.engine.api_key_file is not None:
            found.append(f"{where}: engine.api_key_file {model.engine.api_key_file} is a file on this host — use "
                         f"api_key_env and put the key in the Secret {SECRETS['engine_key']} under that name")
    if options.prometheus_url is not None and not options.prometheus_url.startswith(("http://", "https://")):
        found.append(f"--prometheus-url {options.prometheus_url}: give Prometheus' http:// or https:// URL")
    reads_metrics = options.prometheus_operator or any(m.autoscale and m.engine.launched for m in settings.models)
    if reads_metrics and not settings.observability.metrics:
        found.append("observability.metrics: false — the gateways serve no /metrics for Prometheus (and KEDA) to "
                     "read; set it true")
    return found


def render(settings: Settings, raw: dict, options: Options) -> dict[str, str]:
    """File name → YAML text of the Kustomize directory (call :func:`problems` first)."""
    engines = [(model, entry) for model, entry in zip(settings.models, entries(settings, raw))
               if model.engine.launched]
    plans = {model.name: engine_plan(settings, model) for model, _ in engines}  # each model planned once
    files = {"namespace.yaml": _dump([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": options.namespace}}]),
             "gateway.yaml": _dump(_gateway(settings, raw, options, plans)),
             "network-policy.yaml": _dump(_network_policies(engines))}
    for model, entry in engines:
        files[f"engines-{slug(model.name)}.yaml"] = _dump(_engines(settings, model, entry, options, plans[model.name]))
    if options.prometheus_operator:
        files["monitoring.yaml"] = _dump([
            metrics.service_monitor(_labels(GATEWAY), settings.server.tls is not None, options.namespace),
            metrics.prometheus_rule(settings)])
    files["kustomization.yaml"] = _dump([{
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": options.namespace,
        "labels": [{"pairs": {"app.kubernetes.io/part-of": "seekstack"}, "includeSelectors": False}],
        "resources": ["namespace.yaml", "gateway.yaml", "network-policy.yaml",
                      *(f"engines-{slug(m.name)}.yaml" for m, _ in engines),
                      *(["monitoring.yaml"] if options.prometheus_operator else [])]}])
    return files


def entries(settings: Settings, raw: dict) -> list[dict]:
    """Each model's entry as written (the default model's as the defaults make it)."""
    return raw.get("models") or [m.model_dump(mode="json", exclude_unset=True) for m in settings.models]


def slug(name: str) -> str:
    """A model name as a Kubernetes object name (DNS label: lower case, digits, dashes)."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return text[:40].rstrip("-") or "model"


def discover_url(model_name: str, namespace: str) -> str:
    """The engines' headless Service: its DNS name has one address per engine pod."""
    name = f"engines-{slug(model_name)}"
    return f"http://{name}.{namespace}.svc.cluster.local:{ENGINE_PORT}"


def gateway_config(settings: Settings, raw: dict, options: Options, plans: dict) -> dict:
    """The config every gateway pod runs: the file as written, its host-specific parts replaced."""
    config = {k: v for k, v in raw.items() if k not in ("state_dir", "models")}
    server = {k: v for k, v in (raw.get("server") or {}).items() if k not in ("host", "port")}
    config["server"] = {**server, "host": "0.0.0.0", "port": GATEWAY_PORT}  # noqa: S104 — the pod's own network
    if settings.server.tls is not None:
        tls = f"{CONFIG_DIR}/tls"
        config["server"]["tls"] = {**raw["server"]["tls"], "cert": f"{tls}/tls.crt", "key": f"{tls}/tls.key",
                                   **({"client_ca": f"{tls}/ca.crt"} if settings.server.tls.client_ca else {})}
    config["state_dir"] = STATE_DIR
    for section, field in (("audit", "dir"), ("auth", "admin_key_file")):  # each pod's own, under state_dir
        if section in config:
            config[section] = {k: v for k, v in config[section].items() if k != field}
    models = []
    for model, entry in zip(settings.models, entries(settings, raw)):
        if not model.engine.launched:
            models.append(entry)
            continue
        kept = {k: v for k, v in entry.items() if k not in LAUNCH_FIELDS and k != "engine"}
        planned = plans[model.name]
        if planned is not None:  # the gateway's limits (context, slots) as the engines run them
            kept.update({k: v for k, v in planned[0].items() if k != "prompt_cache_mib"})
        models.append({**kept, "engine": {"kind": model.engine.kind, "api_key_env": ENGINE_KEY_ENV,
                                          "discover": discover_url(model.name, options.namespace)}})
    config["models"] = models
    return config


def engines_config(settings: Settings, model, entry: dict, options: Options, planned: tuple | None) -> dict:
    """The config an engines pod of ``model`` runs: that model alone, one replica, on TCP with the key."""
    engine = entry.get("engine") if isinstance(entry.get("engine"), dict) else {"kind": model.engine.kind}
    engine = {**engine, "host": "0.0.0.0", "port": ENGINE_PORT, "api_key_env": ENGINE_KEY_ENV}  # noqa: S104
    engine.pop("api_key_file", None)
    # a pod is one replica (KEDA counts the pods); the gateways choose fallbacks
    entry = {k: v for k, v in entry.items() if k not in ("autoscale", "fallbacks", "fallback_on")}
    if planned is not None:
        entry.update(planned[0])
    config: dict[str, Any] = {"state_dir": STATE_DIR, "models": [{**entry, "replicas": 1, "engine": engine}]}
    if model.store is not None:
        config["store"] = {**settings.store.model_dump(mode="json", exclude_defaults=True),
                           "path": f"{options.models_dir}/store"}
    return config


def engine_plan(settings: Settings, model) -> tuple[dict, int] | None:
    """A llama.cpp engine pod's sizing — ``context``, ``slots`` and ``prompt_cache_mib`` as the
    planner chooses them where memory is not short (set in the pods' configs, so a pod does not
    choose them from its node's RAM) — and the bytes the pod needs (the plan and `seekstack
    engines` itself: its memory request), when the model file is readable here; else None (the
    pod plans at start, and asks for 2 GiB)."""
    if model.engine.kind != "llamacpp" or model.engine.simulated:
        return None
    alone = settings.model_copy(update={"models": [model.model_copy(update={"replicas": 1})]})
    try:
        derive(alone, ROOMY)
        admission = admit(alone, ROOMY)
    except (SeekstackError, OSError, ValueError):  # a store model, a path only the pods have, not a GGUF
        return None
    [(planned, plan)] = admission.plans
    sizing = {"context": planned.context, "slots": planned.slots, "prompt_cache_mib": planned.prompt_cache_mib}
    return sizing, int(plan.total_bytes) + HOST_PROCESS


def gpus(model) -> int:
    """NVIDIA GPUs one engine pod asks for: its tensor × pipeline parallel size (1 if unset)."""
    engine = model.engine
    if engine.kind not in GPU_KINDS or engine.simulated or model.device == "cpu":
        return 0
    return (getattr(engine, "tensor_parallel", None) or 1) * getattr(engine, "pipeline_parallel", 1)


def after_commands(settings: Settings, options: Options) -> list[str]:
    """What to run once a gateway is ready (a Secret whose value a gateway makes)."""
    if not options.prometheus_operator:
        return []
    return [metrics.metrics_secret_command(options.namespace, f"{GATEWAY}-0", f"{CONFIG_DIR}/seekstack.yaml",
                                           settings.server.tls is not None)]


def secret_commands(settings: Settings, options: Options) -> list[str]:
    """The Secrets to create before applying (their values never pass through seekstack)."""
    ns = options.namespace
    commands = [f"kubectl -n {ns} create secret generic {SECRETS['pepper']} --from-file=pepper.key=PEPPER_FILE "
                "# 32 random bytes: head -c 32 /dev/urandom > PEPPER_FILE (back it up: keys are hashed with it)",
                f"kubectl -n {ns} create secret generic {SECRETS['engine_key']} --from-literal={ENGINE_KEY_ENV}=$(openssl "
                "rand -hex 32)  # add the api_key_env of engines elsewhere here too",
                f"kubectl -n {ns} create secret generic {SECRETS['postgres']} --from-literal=password=…  # PGPASSWORD"]
    if settings.quotas.redis_password_env:
        commands.append(f"kubectl -n {ns} create secret generic {SECRETS['redis']} --from-literal=password=…  "
                        f"# {settings.quotas.redis_password_env}")
    if settings.server.tls is not None:
        commands.append(f"kubectl -n {ns} create secret generic {SECRETS['tls']} --from-file=tls.crt=CERT "
                        "--from-file=tls.key=KEY" + (" --from-file=ca.crt=CLIENT_CA" if settings.server.tls.client_ca else ""))
    return commands


# ----------------------------------------------------------------------------- the objects

def _labels(component: str) -> dict:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/component": component}


def _pod_environment() -> list[dict]:
    """HOME on the writable /tmp; the state directory the config names — the image sets its own
    (`SEEKSTACK_STATE_DIR`, for `docker run`), which would otherwise win over the config's."""
    return [{"name": "HOME", "value": "/tmp"}, {"name": "SEEKSTACK_STATE_DIR", "value": STATE_DIR}]


def _hardened() -> dict:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def _pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": USER, "runAsGroup": USER, "fsGroup": USER,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _claim(name: str, size: str, options: Options) -> dict:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if options.storage_class:
        spec["storageClassName"] = options.storage_class
    return {"metadata": {"name": name}, "spec": spec}


def _gateway(settings: Settings, raw: dict, options: Options, plans: dict) -> list[dict]:
    labels = _labels(GATEWAY)
    https = settings.server.tls is not None
    probe = {"port": "http", "scheme": "HTTPS" if https else "HTTP"}
    mounts = [{"name": "config", "mountPath": f"{CONFIG_DIR}/seekstack.yaml", "subPath": "seekstack.yaml", "readOnly": True},
              {"name": "pepper", "mountPath": f"{CONFIG_DIR}/pepper", "readOnly": True},
              {"name": "state", "mountPath": STATE}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes = [{"name": "config", "configMap": {"name": GATEWAY}},
               {"name": "pepper", "secret": {"secretName": SECRETS["pepper"], "defaultMode": 0o440}},
               {"name": "tmp", "emptyDir": {}}]
    if https:
        mounts.append({"name": "tls", "mountPath": f"{CONFIG_DIR}/tls", "readOnly": True})
        volumes.append({"name": "tls", "secret": {"secretName": SECRETS["tls"], "defaultMode": 0o440}})
    drain = settings.server.drain_timeout
    pod = {
        "securityContext": _pod_security(),
        "terminationGracePeriodSeconds": int(drain) + 15,
        "initContainers": [{
            # the pepper, 0600 in the gateway's own state directory (a Secret's files are not its own)
            "name": "pepper", "image": options.image, "command": ["sh", "-c",
                f"mkdir -p -m 700 {STATE_DIR} && install -m 600 {CONFIG_DIR}/pepper/pepper.key {STATE_DIR}/pepper.key"],
            "volumeMounts": [m for m in mounts if m["name"] in ("pepper", "state")],
            "securityContext": _hardened()}],
        "containers": [{
            "name": "gateway", "image": options.image,
            "args": ["gateway", "--config", f"{CONFIG_DIR}/seekstack.yaml"],
            "ports": [{"name": "http", "containerPort": GATEWAY_PORT}],
            "env": [*_pod_environment(),
                    {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": SECRETS["postgres"], "key": "password",
                                                                          "optional": True}}},
                    *([{"name": settings.quotas.redis_password_env, "valueFrom": {"secretKeyRef": {
                        "name": SECRETS["redis"], "key": "password"}}}] if settings.quotas.redis_password_env else [])],
            "envFrom": [{"secretRef": {"name": SECRETS["engine_key"]}}],
            # ready when it can serve; a probe every 2 s, out after two misses
            "readinessProbe": {"httpGet": {"path": "/readyz", **probe}, "periodSeconds": 2, "failureThreshold": 2,
                               "timeoutSeconds": 2},
            "livenessProbe": {"httpGet": {"path": "/healthz", **probe}, "periodSeconds": 10, "failureThreshold": 3,
                              "timeoutSeconds": 5},
            # up to a minute to start (a claim may wait 30 s for a rescheduled pod's old heartbeat)
            "startupProbe": {"httpGet": {"path": "/healthz", **probe}, "periodSeconds": 2, "failureThreshold": 45},
            # the Service stops sending before SIGTERM starts the drain
            "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            "securityContext": _hardened(),
            "volumeMounts": mounts}],
        "volumes": volumes}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": GATEWAY},
         "data": {"seekstack.yaml": yaml.safe_dump(gateway_config(settings, raw, options, plans), sort_keys=False)}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "seekstack"},
         "spec": {"selector": labels, "ports": [{"name": "http", "port": 443 if https else 80, "targetPort": "http"}]}},
        # the pods' stable names, and what the ServiceMonitor selects (each pod scraped once)
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": GATEWAY, "labels": labels},
         "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "http", "port": GATEWAY_PORT}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": GATEWAY, "labels": labels},
         "spec": {"serviceName": GATEWAY, "podManagementPolicy": "Parallel",
                  # autoscaled: the count is the HorizontalPodAutoscaler's (an apply would reset it)
                  **({} if options.max_gateways else {"replicas": options.gateways}),
                  "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": pod},
                  # each pod's audit chain and state: its own, kept when the pod moves
                  "volumeClaimTemplates": [_claim("state", options.audit_size, options)]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": GATEWAY},
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}},
        *([_gateway_autoscaler(options)] if options.max_gateways else []),
    ]


GATEWAY_CPU_TARGET = 50  # % of the pod's one-core request: past about half a core, a gateway's tail latency
                         # climbs steeply (one event loop; bench/README.md, open_loop.py)


def _gateway_autoscaler(options: Options) -> dict:
    """More gateway pods when their CPU passes the target; one fewer a minute at most, so that each
    one leaving drains its requests (its volume, and audit chain, stays for when it comes back)."""
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": GATEWAY},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": GATEWAY},
                     "minReplicas": options.gateways, "maxReplicas": options.max_gateways,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": GATEWAY_CPU_TARGET}}}],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300,
                                                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}}}


def _engines(settings: Settings, model, entry: dict, options: Options, planned: tuple | None) -> list[dict]:
    name = f"engines-{slug(model.name)}"
    labels = _labels(name)
    gpu = gpus(model)
    memory = f"{-(-planned[1] // 2**20)}Mi" if planned is not None else "2Gi"
    resources: dict[str, Any] = {"requests": {"cpu": str(model.threads or 2), "memory": memory}}
    if gpu:
        resources["limits"] = {"nvidia.com/gpu": gpu}
    mounts = [{"name": "config", "mountPath": f"{CONFIG_DIR}/seekstack.yaml", "subPath": "seekstack.yaml", "readOnly": True},
              {"name": "state", "mountPath": STATE}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes = [{"name": "config", "configMap": {"name": name}}, {"name": "state", "emptyDir": {}},
               {"name": "tmp", "emptyDir": {}}]
    if options.models_claim:
        mounts.append({"name": "models", "mountPath": options.models_dir, "readOnly": True})
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": options.models_claim, "readOnly": True}})
    if gpu:
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory"}})  # vLLM and SGLang's NCCL need more than 64 MiB
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    startup = settings.supervisor.startup_timeout
    pod: dict[str, Any] = {
        "securityContext": _pod_security(),
        "terminationGracePeriodSeconds": 30,
        "containers": [{
            "name": "engines", "image": options.image,
            "args": ["engines", "--config", f"{CONFIG_DIR}/seekstack.yaml"],
            "ports": [{"name": "engine", "containerPort": ENGINE_PORT}],
            "env": _pod_environment(),
            "envFrom": [{"secretRef": {"name": SECRETS["engine_key"]}}],
            # the gateways heartbeat each engine and send only to ready ones; this only gates restarts
            "startupProbe": {"tcpSocket": {"port": "engine"}, "periodSeconds": 10,
                             "failureThreshold": max(1, int(startup // 10) + 1)},
            "livenessProbe": {"tcpSocket": {"port": "engine"}, "periodSeconds": 10, "failureThreshold": 3},
            "resources": resources, "securityContext": _hardened(), "volumeMounts": mounts}],
        "volumes": volumes}
    if gpu:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    spec: dict[str, Any] = {"serviceName": name, "replicas": model.replicas, "podManagementPolicy": "Parallel",
                            "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod}}
    scaling = []
    if model.autoscale is not None:  # KEDA's HPA owns the count: `kubectl apply` must not reset it
        del spec["replicas"]
        scaling.append(metrics.scaled_object(model, name, options.namespace, options.prometheus_url))
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
         "data": {"seekstack.yaml": yaml.safe_dump(engines_config(settings, model, entry, options, planned), sort_keys=False)}},
        # headless: its name resolves to every pod (the gateways' engine.discover), ready or not —
        # the gateways heartbeat each and send only to ready ones
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels,
                  "ports": [{"name": "engine", "port": ENGINE_PORT}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "labels": labels}, "spec": spec},
        *scaling,
    ]


def _network_policies(engines: list) -> list[dict]:
    """Engines take connections from the gateways only (and each request carries the key)."""
    return [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": f"engines-{slug(model.name)}"},
             "spec": {"podSelector": {"matchLabels": _labels(f"engines-{slug(model.name)}")},
                      "policyTypes": ["Ingress"],
                      "ingress": [{"from": [{"podSelector": {"matchLabels": _labels(GATEWAY)}}],
                                   "ports": [{"port": ENGINE_PORT, "protocol": "TCP"}]}]}}
            for model, _ in engines]


def _dump(objects: list[dict]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)
