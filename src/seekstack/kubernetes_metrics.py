"""What a cluster's Prometheus reads of seekstack, and what KEDA scales the engines on.

`seekstack deploy kubernetes` adds these objects to the Kustomize directory (:mod:`.kubernetes`):

- **a ScaledObject per autoscaled model** (KEDA, ``keda.sh/v1alpha1``): the model's
  ``autoscale`` rule — the one :mod:`.traffic.autoscaler` applies on a single host — acting on
  the engines' StatefulSet, on the gateways' own metrics in Prometheus
  (``--prometheus-url``). Two triggers, and the HPA takes the higher answer, as the autoscaler
  takes the higher of its two utilisations:

  - *demand*: requests in flight to the model plus those waiting in the gateways' queues,
    summed over every gateway and averaged over ``window``; one engine pod is meant to carry
    ``slots × scale_up_at`` of them (``queue.concurrency`` in place of ``slots`` when set);
  - *KV cache*: each engine's KV-cache use as the gateways see it (one series per engine
    address, the same on every gateway), averaged over ``window``; one pod is meant to carry
    ``scale_up_at`` of it.

  The HPA leaves a ratio within 10 % of its target alone, so each threshold is the target
  divided by 1.1: a model scales up when its utilisation passes ``scale_up_at``, as on one
  host. One pod at a time, ``up_cooldown`` / ``down_cooldown`` apart (the HPA's policies, 1 s to
  30 min). ``scale_down_at`` has no HPA equivalent: a pod leaves once the rest can carry the
  average load under ``scale_up_at`` (:data:`HPA_TOLERANCE`). The memory plan's check is the
  scheduler's here: a pod whose GPUs are not free stays Pending.
- **with ``--prometheus-operator``, a ServiceMonitor and a PrometheusRule**: every gateway pod's
  ``/metrics`` scraped with a key that may read nothing else (a Secret), and the alert rules of
  ``seekstack deploy alerts`` (``observability.alerts``).

The queries select the namespace's gateways by the ``namespace`` label, which a Prometheus
scraping Kubernetes targets sets (the operator does).
"""

from __future__ import annotations

import math
from typing import Any

from .config import Settings
from .observability.alerts import rule_file

HPA_TOLERANCE = 0.1      # the HPA does nothing while current / target is within 10 % of 1
PERIOD_LIMITS = (1, 1800)  # an HPA scaling policy's periodSeconds
SCRAPE_EVERY = "15s"
METRICS_SECRET = "seekstack-metrics"


def demand_query(model_name: str, namespace: str, window: float) -> str:
    """Requests to the model in flight or waiting, over every gateway, averaged over ``window``."""
    match = f'{{namespace="{namespace}", model="{model_name}"}}'
    span = f"[{_seconds(window)}]"
    return (f"(sum(avg_over_time(seekstack_requests_in_flight{match}{span})) or vector(0))"
            f" + (sum(avg_over_time(seekstack_queue_waiting{match}{span})) or vector(0))")


def kv_cache_query(model_name: str, namespace: str, window: float) -> str:
    """The model's engines' KV-cache use, summed over engines (each counted once), averaged over ``window``."""
    match = f'{{namespace="{namespace}", model="{model_name}"}}'
    return (f"sum(max by (address) (avg_over_time(seekstack_endpoint_kv_cache_usage{match}[{_seconds(window)}])))"
            " or vector(0)")


def scaled_object(model, name: str, namespace: str, prometheus_url: str) -> dict[str, Any]:
    """The KEDA ScaledObject that applies ``model.autoscale`` to the StatefulSet ``name``."""
    rule = model.autoscale
    per_pod = model.concurrency * rule.scale_up_at / (1 + HPA_TOLERANCE)  # requests a pod runs at once: the rest queue
    kv_per_pod = rule.scale_up_at / (1 + HPA_TOLERANCE)

    def trigger(trigger_name: str, query: str, threshold: float) -> dict[str, Any]:
        return {"type": "prometheus", "name": trigger_name, "metricType": "AverageValue",
                "metadata": {"serverAddress": prometheus_url, "query": query, "threshold": _number(threshold)}}

    def one_pod_every(seconds: float) -> dict[str, Any]:
        period = min(max(math.ceil(seconds), PERIOD_LIMITS[0]), PERIOD_LIMITS[1])
        return {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": period}]}

    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name},
            "minReplicaCount": rule.min_replicas, "maxReplicaCount": rule.max_replicas,
            "pollingInterval": max(1, math.ceil(rule.sample_every)),
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                "scaleUp": one_pod_every(rule.up_cooldown), "scaleDown": one_pod_every(rule.down_cooldown)}}},
            "triggers": [trigger("demand", demand_query(model.name, namespace, rule.window), per_pod),
                         trigger("kv-cache", kv_cache_query(model.name, namespace, rule.window), kv_per_pod)]}}


def service_monitor(selector: dict[str, str], https: bool, namespace: str) -> dict[str, Any]:
    """Scrape every gateway pod's /metrics (the headless Service's endpoints) with the metrics key."""
    endpoint: dict[str, Any] = {
        "port": "http", "path": "/metrics", "interval": SCRAPE_EVERY, "scheme": "https" if https else "http",
        "authorization": {"type": "Bearer", "credentials": {"name": METRICS_SECRET, "key": "token"}}}
    if https:
        endpoint["tlsConfig"] = {"ca": {"secret": {"name": METRICS_SECRET, "key": "ca.crt"}},
                                 "serverName": f"seekstack.{namespace}.svc"}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "seekstack-gateways"},
            "spec": {"selector": {"matchLabels": selector}, "endpoints": [endpoint]}}


def prometheus_rule(settings: Settings) -> dict[str, Any]:
    """The alert rules of `seekstack deploy alerts`, for the operator's Prometheus."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "seekstack"},
            "spec": rule_file(settings.observability.alerts)}


def metrics_secret_command(namespace: str, gateway_pod: str, config: str, https: bool) -> str:
    """The scrape key's Secret, made once a gateway runs: a key that reads /metrics and calls nothing else."""
    return (f"kubectl -n {namespace} create secret generic {METRICS_SECRET} --from-literal=token=$(kubectl -n {namespace} "
            f"exec {gateway_pod} -- seekstack keys create --config {config} --name prometheus --role data_analyst "
            "--endpoint /metrics --json | jq -r .key)"
            + (" --from-file=ca.crt=CA  # CA: the one that signed the gateways' certificate" if https else ""))


def _seconds(value: float) -> str:
    return f"{max(1, math.ceil(value))}s"


def _number(value: float) -> str:
    return f"{value:.4g}"
