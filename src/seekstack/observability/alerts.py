"""The Prometheus rule file ``seekstack deploy alerts`` writes, from ``observability.alerts``.

Each rule is data: name, PromQL, how long it must hold, severity, a summary and a one-line
runbook. Thresholds come from settings, so a site tunes them in seekstack.yaml and rewrites
the file. A test parses every expression (and runs ``promtool check rules`` when present).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from ..config import AlertThresholds


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    hold: str          # Prometheus `for:`
    severity: str      # info | warning | critical
    summary: str
    runbook: str


SLOT_UTILISATION = "sum by (model) (seekstack_requests_in_flight) / sum by (model) (seekstack_replica_slots)"


def _quantile(q: float, metric: str, by: str = "model") -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket[5m])))"


def alerts(t: AlertThresholds) -> list[Alert]:
    days = 86400
    crit_days = t.certificate_expiry_days / 5
    return [
        Alert("SeekstackGatewayAbsent", "absent(seekstack_build_info)", "5m", "critical",
              "No seekstack gateway is being scraped.",
              "Check the gateway process (`seekstack ps`, its log) and Prometheus' scrape config and key."),
        Alert("SeekstackReplicaDown", "seekstack_replica_up == 0", t.replica_down_for, "critical",
              "Replica {{ $labels.model }}/{{ $labels.replica }} is down.",
              "Run `seekstack ps`; read the replica's last exit in the gateway log; `seekstack doctor` checks memory and model files."),
        Alert("SeekstackReplicaRestarting", "increase(seekstack_replica_restarts_total[15m]) > 2", "0m", "warning",
              "Replica {{ $labels.model }}/{{ $labels.replica }} restarted more than twice in 15 minutes.",
              "A crash loop: look for out-of-memory kills (dmesg) and engine errors in the gateway log; lower context or slots."),
        Alert("SeekstackErrorRateHigh",
              f'sum by (model) (rate(seekstack_requests_total{{status=~"5.."}}[5m])) / sum by (model) (rate(seekstack_requests_total[5m])) > {t.error_ratio}',
              "5m", "critical", f"More than {t.error_ratio:.0%} of requests to {{{{ $labels.model }}}} fail with 5xx.",
              "Check replica health and the engine error codes in the access log (field `error`); 503s with Retry-After mean no healthy replica."),
        Alert("SeekstackTokenLatencyWarning", f"{_quantile(0.95, 'seekstack_time_per_output_token_seconds')} > {t.token_latency_warning_ms / 1000}",
              "5m", "warning", f"p95 time per output token of {{{{ $labels.model }}}} is above {t.token_latency_warning_ms:g} ms.",
              "The replicas are saturated: add replicas, lower slots per replica, or move to faster hardware (`seekstack plan`)."),
        Alert("SeekstackTokenLatencyCritical", f"{_quantile(0.95, 'seekstack_time_per_output_token_seconds')} > {t.token_latency_critical_ms / 1000}",
              "5m", "critical", f"p95 time per output token of {{{{ $labels.model }}}} is above {t.token_latency_critical_ms:g} ms.",
              "Users see a stalling stream: shed load (quotas) or add replicas now."),
        Alert("SeekstackTTFTP99High", f"{_quantile(0.99, 'seekstack_time_to_first_token_seconds')} > {t.ttft_p99_ms / 1000}",
              "5m", "warning", f"p99 time to first token of {{{{ $labels.model }}}} is above {t.ttft_p99_ms:g} ms.",
              "Requests queue for slots or prompts are long: check seekstack_queue_waiting and prompt token rates."),
        Alert("SeekstackSustainedUtilization", f"{SLOT_UTILISATION} > {t.sustained_utilization}", "15m", "warning",
              f"{{{{ $labels.model }}}} has used more than {t.sustained_utilization:.0%} of its engine slots for 15 minutes.",
              "Capacity is short: add replicas or slots before latency alerts follow."),
        Alert("SeekstackScaleUp", f"avg_over_time(({SLOT_UTILISATION})[5m:30s]) > {t.scale_up_utilization}", "0m", "info",
              f"{{{{ $labels.model }}}}: average slot utilisation over 5 minutes is above {t.scale_up_utilization:.0%}; scale up.",
              "Raise `replicas` for the model (or let the autoscaler act on this alert)."),
        Alert("SeekstackScaleDown", f"avg_over_time(({SLOT_UTILISATION})[30m:1m]) < {t.scale_down_utilization}", "30m", "info",
              f"{{{{ $labels.model }}}}: average slot utilisation is below {t.scale_down_utilization:.0%}; replicas could be removed.",
              "Lower `replicas` for the model to free memory, keeping at least two for failover."),
        Alert("SeekstackGPUUtilizationWarning", f"seekstack_gpu_utilization_ratio > {t.gpu_utilization_warning}", "5m", "warning",
              f"GPU {{{{ $labels.gpu }}}} is over {t.gpu_utilization_warning:.0%} busy.",
              "Expect queueing soon: plan more replicas or GPUs (`seekstack plan`)."),
        Alert("SeekstackGPUUtilizationCritical", f"seekstack_gpu_utilization_ratio > {t.gpu_utilization_critical}", "5m", "critical",
              f"GPU {{{{ $labels.gpu }}}} is over {t.gpu_utilization_critical:.0%} busy.",
              "The GPU is the bottleneck: shed load with quotas or add capacity."),
        Alert("SeekstackGPUMemoryWarning", f"seekstack_gpu_memory_used_bytes / seekstack_gpu_memory_total_bytes > {t.gpu_memory_warning}",
              "5m", "warning", f"GPU {{{{ $labels.gpu }}}} memory is over {t.gpu_memory_warning:.0%} used.",
              "Little headroom for KV cache: lower context or slots, or use a smaller quantization."),
        Alert("SeekstackGPUMemoryCritical", f"seekstack_gpu_memory_used_bytes / seekstack_gpu_memory_total_bytes > {t.gpu_memory_critical}",
              "2m", "critical", f"GPU {{{{ $labels.gpu }}}} memory is over {t.gpu_memory_critical:.0%} used.",
              "An out-of-memory crash is near: stop extra replicas on this GPU or lower context now."),
        Alert("SeekstackModelsTakingTurnsOften",
              f'sum(increase(seekstack_keep_alive_actions_total{{action="evict"}}[1h])) > {t.model_turns_per_hour}', "0m", "warning",
              f"Models were unloaded to make room for another more than {t.model_turns_per_hour} times in an hour: requests keep waiting for loads.",
              "The models in use do not fit together: raise supervisor.memory_budget_gb or the memory, drop keep_alive from the busiest model, or move a model to another host (`seekstack plan`)."),
        Alert("SeekstackAnsweredByFallback",
              'sum by (model, to, reason) (increase(seekstack_fallbacks_total{reason!="context_length"}[10m])) > 0', "0m",
              "warning", "Requests for {{ $labels.model }} are answered by its fallback {{ $labels.to }}: it is {{ $labels.reason }}.",
              "Clients get another model than they asked for. Bring the model back (`seekstack ps`, its engines' logs), or give it "
              "more room when it is overloaded (replicas, queue). Fallbacks for long prompts (context_length) are by design and not alerted."),
        Alert("SeekstackCertificateExpiring", f"seekstack_tls_certificate_expiry_timestamp_seconds - time() < {t.certificate_expiry_days * days:.0f}",
              "1h", "warning", f"The gateway's TLS certificate expires in less than {t.certificate_expiry_days:g} days.",
              "Renew server.tls.cert and restart the gateway (clients keep working through the restart drain)."),
        Alert("SeekstackCertificateExpiryCritical", f"seekstack_tls_certificate_expiry_timestamp_seconds - time() < {crit_days * days:.0f}",
              "10m", "critical", f"The gateway's TLS certificate expires in less than {crit_days:g} days.",
              "Renew server.tls.cert today; an expired certificate stops every client."),
        Alert("SeekstackAuditWriteSlow", "histogram_quantile(0.99, sum by (le) (rate(seekstack_audit_write_seconds_bucket[5m]))) > 0.05",
              "10m", "warning", "p99 audit write is above 50 ms; every request waits for it.",
              "Audit is fail-closed: check the audit disk (latency, free space) before requests start failing with 503."),
        Alert("SeekstackAuditUnavailable", "seekstack_audit_available == 0", "0m", "critical",
              "The audit store cannot be written: the gateway refuses every request (fail-closed).",
              "Read /readyz (it names the reason) and the gateway log; free disk, release the lock or raise audit.max_bytes — service resumes by itself."),
        Alert("SeekstackAuditStoreFilling", "seekstack_audit_store_bytes / seekstack_audit_store_budget_bytes > 0.8", "10m",
              "warning", "The audit store is past 80 % of its budget (audit.max_bytes); at 100 % every request is refused.",
              "Export and archive old records, shorten nothing below the legal minimum, or raise audit.max_bytes and the disk."),
        Alert("SeekstackAuditChainDiverged", "seekstack_audit_chain_diverged == 1", "0m", "critical",
              "A gateway's audit chain is not the one the governance database vouches for (an older copy, or a copy another process writes).",
              "Read /readyz and the log (they name it); stop the copy, give it a fresh audit.dir and keep the old directory as evidence."),
        Alert("SeekstackGatewayPolicyDiffers", "max by (instance) (seekstack_gateway_policy_differs) == 1", "15m", "warning",
              "A gateway's roles, PII, quota, audit or console settings differ from the other gateways': clients get different answers by gateway.",
              "`seekstack gateways` names who differs in what: make the config the same everywhere and restart the odd ones."),
    ]


def rule_file(t: AlertThresholds) -> dict[str, Any]:
    rules = []
    for a in alerts(t):
        rule: dict[str, Any] = {"alert": a.name, "expr": a.expr}
        if a.hold != "0m":
            rule["for"] = a.hold
        rule["labels"] = {"severity": a.severity, "service": "seekstack"}
        rule["annotations"] = {"summary": a.summary, "runbook": a.runbook}
        rules.append(rule)
    return {"groups": [{"name": "seekstack", "rules": rules}]}


def render_rules(t: AlertThresholds) -> str:
    header = "# Prometheus alert rules for seekstack, written by `seekstack deploy alerts`.\n" \
             "# Thresholds come from observability.alerts in seekstack.yaml; edit there and rewrite.\n"
    return header + yaml.safe_dump(rule_file(t), sort_keys=False, width=200, allow_unicode=True)


def alerts_table(t: AlertThresholds) -> str:
    """What each alert means (markdown), for docs/observability.md."""
    lines = ["| alert | severity | fires when | runbook |", "|---|---|---|---|"]
    for a in alerts(t):
        when = a.summary.replace("Replica {{ $labels.model }}/{{ $labels.replica }}", "A replica") \
            .replace("{{ $labels.model }}", "a model").replace("{{ $labels.gpu }}", "a")
        held = f" (held {a.hold})" if a.hold != "0m" else ""
        lines.append(f"| `{a.name}` | {a.severity} | {when}{held} | {a.runbook} |")
    return "\n".join(lines) + "\n"
