"""The Grafana dashboard ``seekstack deploy dashboard`` writes: rows of panels as data.

Every query names only ``seekstack_…`` metrics that ``/metrics`` exposes (a test parses each
query and checks). ``$model`` and ``$replica`` filter every panel; ``$datasource`` picks the
Prometheus data source on import.
"""

from __future__ import annotations

import json
from typing import Any

from .alerts import SLOT_UTILISATION

M = '{model=~"$model"}'
MR = '{model=~"$model", replica=~"$replica"}'
RATE = "$__rate_interval"

# (row title, [(panel title, unit, [(query, legend)], kind)])
ROWS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]], str]]]] = [
    ("Traffic", [
        ("Requests per second by status", "reqps",
         [(f"sum by (status) (rate(seekstack_requests_total{M}[{RATE}]))", "{{status}}")], "timeseries"),
        ("5xx ratio", "percentunit",
         [(f'sum by (model) (rate(seekstack_requests_total{{model=~"$model", status=~"5.."}}[{RATE}])) / '
           f"sum by (model) (rate(seekstack_requests_total{M}[{RATE}]))", "{{model}}")], "timeseries"),
        ("Rejected requests by reason", "reqps",
         [(f"sum by (reason) (rate(seekstack_rejected_requests_total[{RATE}]))", "{{reason}}")], "timeseries"),
        ("Quota rejections", "reqps",
         [(f"sum by (scope, limit) (rate(seekstack_quota_rejections_total[{RATE}]))", "{{scope}} {{limit}}")], "timeseries"),
    ]),
    ("Latency", [
        ("Time to first token (p50 / p99)", "s",
         [(f"histogram_quantile(0.5, sum by (le, model) (rate(seekstack_time_to_first_token_seconds_bucket{MR}[{RATE}])))", "p50 {{model}}"),
          (f"histogram_quantile(0.99, sum by (le, model) (rate(seekstack_time_to_first_token_seconds_bucket{MR}[{RATE}])))", "p99 {{model}}")],
         "timeseries"),
        ("Time per output token (p95) by replica", "s",
         [(f"histogram_quantile(0.95, sum by (le, model, replica) (rate(seekstack_time_per_output_token_seconds_bucket{MR}[{RATE}])))",
           "{{model}}/{{replica}}")], "timeseries"),
        ("Request latency (p50 / p99)", "s",
         [(f"histogram_quantile(0.5, sum by (le, model) (rate(seekstack_request_duration_seconds_bucket{M}[{RATE}])))", "p50 {{model}}"),
          (f"histogram_quantile(0.99, sum by (le, model) (rate(seekstack_request_duration_seconds_bucket{M}[{RATE}])))", "p99 {{model}}")],
         "timeseries"),
    ]),
    ("Tokens", [
        ("Tokens per second", "short",
         [(f"sum by (model) (rate(seekstack_prompt_tokens_total{M}[{RATE}]))", "prompt {{model}}"),
          (f"sum by (model) (rate(seekstack_completion_tokens_total{M}[{RATE}]))", "completion {{model}}"),
          (f"sum by (model) (rate(seekstack_reasoning_tokens_total{M}[{RATE}]))", "reasoning {{model}}")], "timeseries"),
        ("Prefix-cache hit rate", "percentunit",
         [(f"sum by (model) (rate(seekstack_prompt_cached_tokens_total{M}[{RATE}])) / "
           f"sum by (model) (rate(seekstack_prompt_tokens_total{M}[{RATE}]))", "{{model}}")], "timeseries"),
        ("Engine generation speed by replica", "short",
         [(f"seekstack_engine_predicted_tokens_seconds{MR}", "{{model}}/{{replica}}")], "timeseries"),
    ]),
    ("Capacity and replicas", [
        ("Slot utilisation", "percentunit",
         [(SLOT_UTILISATION.replace("seekstack_requests_in_flight", f"seekstack_requests_in_flight{M}")
           .replace("seekstack_replica_slots", f"seekstack_replica_slots{M}"), "{{model}}")], "timeseries"),
        ("In flight by replica, waiting by model", "short",
         [(f"seekstack_requests_in_flight{MR}", "in flight {{model}}/{{replica}}"),
          (f"seekstack_queue_waiting{M}", "waiting {{model}}"),
          (f"seekstack_engine_requests_deferred{MR}", "engine deferred {{model}}/{{replica}}")], "timeseries"),
        ("Replicas up", "short", [(f"sum by (model) (seekstack_replica_up{M})", "{{model}}")], "stat"),
        ("Traffic share by deployment (canary, blue-green)", "percentunit",
         [(f"seekstack_deployment_traffic_share{M}", "{{deployment}} {{version}}")], "timeseries"),
        ("Failover: ejections, resumed streams, fallbacks, overload refusals (1h)", "short",
         [(f"sum by (model) (increase(seekstack_endpoint_ejections_total{M}[1h]))", "ejections {{model}}"),
          (f"sum by (model) (increase(seekstack_streams_resumed_total{M}[1h]))", "resumed {{model}}"),
          (f"sum by (model, to) (increase(seekstack_fallbacks_total{M}[1h]))", "{{model}} → {{to}}"),
          (f"sum by (model) (increase(seekstack_queue_rejected_total{M}[1h]))", "429 {{model}}")], "timeseries"),
        ("Memory plan: models loaded now, and the budget", "bytes",
         [(f"seekstack_memory_planned_bytes{M}", "{{model}}"), ("seekstack_memory_budget_bytes", "budget")], "timeseries"),
        ("Models loaded and unloaded (1h)", "short",
         [(f"sum by (model, action) (increase(seekstack_keep_alive_actions_total{M}[1h]))", "{{action}} {{model}}")],
         "timeseries"),
        ("Replica restarts (1h)", "short",
         [(f"sum by (model, replica) (increase(seekstack_replica_restarts_total{MR}[1h]))", "{{model}}/{{replica}}")], "stat"),
    ]),
    ("Processes", [
        ("Memory", "bytes",
         [("seekstack_process_resident_memory_bytes", "gateway"),
          (f"seekstack_replica_resident_memory_bytes{MR}", "{{model}}/{{replica}}")], "timeseries"),
        ("CPU (cores)", "short",
         [(f"rate(seekstack_process_cpu_seconds_total[{RATE}])", "gateway"),
          (f"rate(seekstack_replica_cpu_seconds_total{MR}[{RATE}])", "{{model}}/{{replica}}")], "timeseries"),
    ]),
    ("GPUs", [
        ("GPU utilisation", "percentunit", [("seekstack_gpu_utilization_ratio", "GPU {{gpu}}")], "timeseries"),
        ("GPU memory used", "percentunit",
         [("seekstack_gpu_memory_used_bytes / seekstack_gpu_memory_total_bytes", "GPU {{gpu}}")], "timeseries"),
        ("GPU temperature", "celsius", [("seekstack_gpu_temperature_celsius", "GPU {{gpu}}")], "timeseries"),
        ("GPU power", "watt", [("seekstack_gpu_power_watts", "GPU {{gpu}}")], "timeseries"),
    ]),
    ("Governance", [
        ("PII detections by class", "short",
         [(f"sum by (class) (increase(seekstack_pii_detections_total[{RATE}]))", "{{class}}")], "timeseries"),
        ("Audit write (p99)", "s",
         [(f"histogram_quantile(0.99, sum by (le) (rate(seekstack_audit_write_seconds_bucket[{RATE}])))", "p99")], "timeseries"),
        ("TLS certificate: days left", "d",
         [("(seekstack_tls_certificate_expiry_timestamp_seconds - time()) / 86400", "days")], "stat"),
    ]),
]


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append({"id": next_id, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        next_id, y = next_id + 1, y + 1
        width = 24 // min(len(row_panels), 4)
        for i, (title, unit, queries, kind) in enumerate(row_panels):
            x = (i % 4) * width
            if i and i % 4 == 0:
                y += 8
            panels.append({
                "id": next_id, "type": kind, "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": width, "x": x, "y": y},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
                "targets": [{"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend,
                             "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                            for j, (expr, legend) in enumerate(queries)],
            })
            next_id += 1
        y += 8
    return {
        "title": "seekstack",
        "uid": "seekstack-overview",
        "tags": ["seekstack", "llm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "model", "type": "query", "label": "Model", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": "label_values(seekstack_replica_up, model)", "includeAll": True, "multi": True,
             "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "refresh": 2},
            {"name": "replica", "type": "query", "label": "Replica", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": 'label_values(seekstack_replica_up{model=~"$model"}, replica)', "includeAll": True, "multi": True,
             "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "refresh": 2},
        ]},
        "panels": panels,
    }


def render_dashboard() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, query) for every target of every panel, template variables included."""
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]
