"""The gateway's Prometheus metrics: what each request did, recorded once when it ends.

:class:`GatewayMetrics` owns a private registry. The guard calls :meth:`GatewayMetrics.observe`
with the route, the status, the error code of a refusal and the request's :class:`Meter`
(model, replica, tokens, first/last token times, PII classes); nothing else on the request
path touches metrics. What is read off other parts — replicas, engines' own counters,
process CPU/memory, GPUs, the TLS certificate — is collected when ``/metrics`` is scraped
(:mod:`seekstack.observability.collectors`).

``METRICS`` lists every family with its type, labels and meaning: docs/observability.md
embeds it as a table, and a test keeps the two equal.
"""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest

from ..governance.meter import Meter

disable_created_metrics()  # no *_created series: they double the page and no dashboard reads them

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60)
TPOT_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1)
AUDIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)

# name → (type, labels, meaning). Engine families (seekstack_engine_*) come from the engines.
METRICS: dict[str, tuple[str, str, str]] = {
    "seekstack_requests_total": ("counter", "route, model, status", "Requests answered, by route, model and HTTP status (refusals included)."),
    "seekstack_request_duration_seconds": ("histogram", "route, model", "Time from the request's arrival to its last byte (a stream: its end)."),
    "seekstack_time_to_first_token_seconds": ("histogram", "model, replica", "Streamed requests: arrival at the gateway to the first token sent to the client (TTFT)."),
    "seekstack_time_per_output_token_seconds": ("histogram", "model, replica", "Streamed requests: (last token − first token) ÷ (completion tokens − 1), as vLLM's TPOT."),
    "seekstack_prompt_tokens_total": ("counter", "model", "Prompt tokens processed."),
    "seekstack_prompt_cached_tokens_total": ("counter", "model", "Prompt tokens the engine took from its prefix cache instead of computing them (llama.cpp and vLLM report them); over seekstack_prompt_tokens_total, the prefix-cache hit rate."),
    "seekstack_completion_tokens_total": ("counter", "model", "Completion tokens generated, reasoning included."),
    "seekstack_reasoning_tokens_total": ("counter", "model", "Completion tokens spent on reasoning."),
    "seekstack_rejected_requests_total": ("counter", "route, reason", "Requests refused with a 4xx; `reason` is the error code (invalid_api_key, permission_denied, rate_limit_exceeded, context_length_exceeded, payload_too_large, model_not_found, …)."),
    "seekstack_quota_rejections_total": ("counter", "scope, limit", "429s by the quota that refused: scope key|user|team, limit requests_per_minute, tokens_per_minute, concurrent_requests, tokens_per_day, tokens_per_month."),
    "seekstack_pii_detections_total": ("counter", "class", "PII found in prompts and answers, by class (never values)."),
    "seekstack_audit_write_seconds": ("histogram", "", "Time until a request's audit record is committed (the request waits for it: fail-closed)."),
    "seekstack_audit_available": ("gauge", "", "1 while the audit store takes writes; 0 while it cannot, when every request is refused (fail-closed)."),
    "seekstack_audit_store_bytes": ("gauge", "", "Bytes the audit records take (free pages retention left are not counted)."),
    "seekstack_audit_store_budget_bytes": ("gauge", "", "The audit store's budget, `audit.max_bytes`; absent without one."),
    "seekstack_audit_chain_diverged": ("gauge", "", "1 when this gateway's audit chain is not the one the governance database vouches for (an older copy, or another process writing a copy of its audit directory): see /readyz and the log."),
    "seekstack_fleet_gateways": ("gauge", "state", "Gateways on the governance database by state (`serving`, `silent`: not seen for 30 s, `stopped`), as this gateway last read them (every 10 s)."),
    "seekstack_gateway_policy_differs": ("gauge", "section", "1 when this gateway's settings in that section (auth, roles, pii, quotas, audit, console, source_limits, priorities) differ from most serving gateways': a request may be answered differently here."),
    "seekstack_requests_in_flight": ("gauge", "model, replica", "Requests the gateway has sent to the replica and not finished."),
    "seekstack_endpoint_kv_cache_usage": ("gauge", "model, address", "Share of the endpoint's KV cache in use, 0–1, as its engine last reported it (vLLM, SGLang and the simulator report it); `address` is the engine's, so every gateway gives the same series."),
    "seekstack_replica_slots": ("gauge", "model, replica, engine", "Parallel sequences (engine slots) of the replica."),
    "seekstack_model_ready": ("gauge", "model", "1 when at least one endpoint of the model takes requests, else 0 (the gateway itself stays ready: see /readyz)."),
    "seekstack_model_ready_endpoints": ("gauge", "model", "Endpoints of the model that take requests now, over all its deployments."),
    "seekstack_endpoint_ejected": ("gauge", "model, endpoint", "1 while the endpoint is ejected (its circuit breaker is open: a failed request or two failed health checks), else 0."),
    "seekstack_endpoint_ejections_total": ("counter", "model, endpoint", "Times the endpoint was ejected."),
    "seekstack_queue_waiting": ("gauge", "model", "Requests waiting in the gateway's queue for a slot on one of the model's endpoints (`queue.concurrency` each: by default the engine's slots)."),
    "seekstack_queue_rejected_total": ("counter", "model, reason", "Requests refused with 429 by the model's queue: `full` (max_waiting reached) or `timeout` (max_wait passed)."),
    "seekstack_fallbacks_total": ("counter", "model, to, reason", "Requests for `model` answered by its fallback `to` (`fallbacks` in the config) because `model` was `unavailable`, `overloaded`, or too short in context (`context_length`)."),
    "seekstack_streams_resumed_total": ("counter", "model", "Streams whose engine broke mid-way and that went on on another endpoint."),
    "seekstack_autoscaler_utilization": ("gauge", "model", "The autoscaler's utilisation (saturation: slots in use with the queue, or KV-cache use), averaged over its window."),
    "seekstack_autoscaler_replicas": ("gauge", "model", "Replicas of an autoscaled model now."),
    "seekstack_autoscaler_decisions_total": ("counter", "model, direction", "The autoscaler's decisions: `up`, `down`, and `held` (a scale-up the memory plan refused)."),
    "seekstack_memory_budget_bytes": ("gauge", "", "The memory the engines this host starts may use in all, planned at start (`supervisor.memory_budget_gb`, or what was available)."),
    "seekstack_memory_planned_bytes": ("gauge", "model", "The memory plan of each model loaded now (all its replicas, as admission sizes them); an unloaded model has no series."),
    "seekstack_keep_alive_actions_total": ("counter", "model, action", "Models with `keep_alive` unloaded for being idle (`unload`) or to make room for another (`evict`), and loaded again by a request (`load`)."),
    "seekstack_deployment_traffic_share": ("gauge", "model, deployment, version", "The share of a model's new requests each of its deployments takes now (a canary's percentage; 0 while not ready)."),
    "seekstack_rollout_active": ("gauge", "model, mode, to", "1 while a canary or blue-green rollout of the model to that version is in progress."),
    "seekstack_rollouts_total": ("counter", "model, outcome", "Rollouts ended: `promoted`, `rolled-back` (a guard broke), `aborted`, `failed`."),
    "seekstack_replica_up": ("gauge", "model, replica, engine", "1 when the replica passes its heartbeat and takes requests, else 0; no series while it is unloaded on purpose (`seekstack models unload`, `keep_alive`)."),
    "seekstack_replica_restarts_total": ("counter", "model, replica, engine", "Times the supervisor restarted the replica after a crash or a failed heartbeat."),
    "seekstack_replica_resident_memory_bytes": ("gauge", "model, replica, engine", "Resident memory of the replica's engine process."),
    "seekstack_replica_cpu_seconds_total": ("counter", "model, replica, engine", "CPU time used by the replica's engine process."),
    "seekstack_engine_*": ("engine's", "model, replica, engine + the engine's", "The engine's own metrics (llama.cpp `llamacpp:x`, vLLM `vllm:x`) renamed `seekstack_engine_x` and labelled with model, replica and engine."),
    "seekstack_process_cpu_seconds_total": ("counter", "", "CPU time of the gateway process."),
    "seekstack_process_resident_memory_bytes": ("gauge", "", "Resident memory of the gateway process."),
    "seekstack_gc_pause_seconds": ("histogram", "generation", "How long each garbage collection of the gateway held its event loop (every request in flight waits)."),
    "seekstack_gc_frozen_objects": ("gauge", "", "Start-up objects kept out of full collections (frozen once the gateway is ready; 0 before)."),
    "seekstack_gpus": ("gauge", "", "GPUs NVML reports (0: no GPU, or no NVIDIA driver)."),
    "seekstack_gpu_utilization_ratio": ("gauge", "gpu, name", "GPU busy time over the last sample period, 0–1."),
    "seekstack_gpu_memory_used_bytes": ("gauge", "gpu, name", "GPU memory in use."),
    "seekstack_gpu_memory_total_bytes": ("gauge", "gpu, name", "GPU memory in all."),
    "seekstack_gpu_temperature_celsius": ("gauge", "gpu, name", "GPU core temperature."),
    "seekstack_gpu_power_watts": ("gauge", "gpu, name", "GPU power draw."),
    "seekstack_tls_certificate_expiry_timestamp_seconds": ("gauge", "", "When the served TLS certificate expires (Unix time); absent without TLS."),
    "seekstack_build_info": ("gauge", "version", "Always 1; the running seekstack version."),
}


class GatewayMetrics:
    """Per-request metrics. ``observe`` runs once per request, after its last byte."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter("seekstack_requests", help_text("seekstack_requests_total"), ["route", "model", "status"], registry=r)
        self.latency = Histogram("seekstack_request_duration_seconds", help_text("seekstack_request_duration_seconds"),
                                 ["route", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("seekstack_time_to_first_token_seconds", help_text("seekstack_time_to_first_token_seconds"),
                              ["model", "replica"], buckets=TTFT_BUCKETS, registry=r)
        self.tpot = Histogram("seekstack_time_per_output_token_seconds", help_text("seekstack_time_per_output_token_seconds"),
                              ["model", "replica"], buckets=TPOT_BUCKETS, registry=r)
        self.prompt_tokens = Counter("seekstack_prompt_tokens", help_text("seekstack_prompt_tokens_total"), ["model"], registry=r)
        self.cached_tokens = Counter("seekstack_prompt_cached_tokens", help_text("seekstack_prompt_cached_tokens_total"), ["model"],
                                     registry=r)
        self.completion_tokens = Counter("seekstack_completion_tokens", help_text("seekstack_completion_tokens_total"), ["model"], registry=r)
        self.reasoning_tokens = Counter("seekstack_reasoning_tokens", help_text("seekstack_reasoning_tokens_total"), ["model"], registry=r)
        self.rejected = Counter("seekstack_rejected_requests", help_text("seekstack_rejected_requests_total"), ["route", "reason"], registry=r)
        self.quota_rejections = Counter("seekstack_quota_rejections", help_text("seekstack_quota_rejections_total"),
                                        ["scope", "limit"], registry=r)
        self.pii = Counter("seekstack_pii_detections", help_text("seekstack_pii_detections_total"), ["class"], registry=r)
        self.audit_write = Histogram("seekstack_audit_write_seconds", help_text("seekstack_audit_write_seconds"),
                                     buckets=AUDIT_BUCKETS, registry=r)
        self._children: dict[tuple[str, str, int, str], _Series] = {}

    def observe(self, route: str, status: int, elapsed: float, meter: Meter | None, error_code: str | None = None) -> None:
        model = meter.model or "" if meter is not None else ""
        series = self._series(route, model, status, meter.replica or "" if meter is not None else "")
        series.requests.inc()
        series.latency.observe(elapsed)
        if error_code is not None and 400 <= status < 500:
            self.rejected.labels(route, error_code).inc()
        if meter is None or meter.model is None:
            return
        if meter.prompt_tokens:
            series.prompt_tokens.inc(meter.prompt_tokens)
        if meter.cached_tokens:
            series.cached_tokens.inc(meter.cached_tokens)
        if meter.completion_tokens:
            series.completion_tokens.inc(meter.completion_tokens)
        if meter.reasoning_tokens:
            series.reasoning_tokens.inc(meter.reasoning_tokens)
        if meter.first_token_at:
            series.ttft.observe(meter.first_token_at - meter.started)
            if meter.completion_tokens > 1 and meter.last_token_at > meter.first_token_at:
                series.tpot.observe((meter.last_token_at - meter.first_token_at) / (meter.completion_tokens - 1))
        for name, count in meter.pii.items():
            self.pii.labels(name).inc(count)

    def _series(self, route: str, model: str, status: int, replica: str) -> "_Series":
        """The labelled children one request updates, looked up once per label combination (all
        bounded: routes, models, statuses, replicas) — ``labels()`` per update cost 5× as much."""
        key = (route, model, status, replica)
        series = self._children.get(key)
        if series is None:
            series = self._children[key] = _Series(
                self.requests.labels(route, model, str(status)), self.latency.labels(route, model),
                self.ttft.labels(model, replica), self.tpot.labels(model, replica), self.prompt_tokens.labels(model),
                self.completion_tokens.labels(model), self.reasoning_tokens.labels(model), self.cached_tokens.labels(model))
        return series

    def quota_rejected(self, scope: str, limit: str) -> None:
        self.quota_rejections.labels(scope, limit).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Series(NamedTuple):
    requests: Counter
    latency: Histogram
    ttft: Histogram
    tpot: Histogram
    prompt_tokens: Counter
    completion_tokens: Counter
    reasoning_tokens: Counter
    cached_tokens: Counter


def help_text(name: str) -> str:
    """The meaning of a metric, from METRICS (its HELP line)."""
    return METRICS[name][2]



def metrics_table() -> str:
    """The metric reference (markdown) that docs/observability.md embeds."""
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for name, (kind, labels, meaning) in METRICS.items():
        lines.append(f"| `{name}` | {kind} | {labels or '—'} | {meaning} |")
    return "\n".join(lines) + "\n"
