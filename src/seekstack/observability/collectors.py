"""Metrics read off other parts when ``/metrics`` is scraped (never on the request path).

- :class:`ReplicaCollector`: replica up/restarts, slots, in-flight requests, and
  each engine process's memory and CPU.
- :class:`TrafficCollector`: ejections, the models' queues, resumed streams, fallbacks, the autoscaler.
- :class:`EngineMetrics`: the engines' own ``/metrics`` (llama.cpp ``llamacpp:…``, vLLM
  ``vllm:…``), fetched concurrently before each render and renamed ``seekstack_engine_…``
  with ``model``, ``replica`` and ``engine`` labels, so every engine reads the same way.
- :class:`GpuCollector`: utilisation, memory, temperature and power per GPU via NVML;
  ``seekstack_gpus 0`` when there is no GPU or no driver.
- :class:`StaticCollector`: the build info and the TLS certificate's expiry.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import itertools
import logging
import time
from typing import Any, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from .metrics import help_text as _help

log = logging.getLogger("seekstack.metrics")
ENGINE_PREFIX = "seekstack_engine_"
SCRAPE_TIMEOUT_S = 2.0


class ReplicaCollector(Collector):
    """Every endpoint in the registry of deployments, and each model's state as a whole."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        labels = ["model", "replica", "engine"]
        up = GaugeMetricFamily("seekstack_replica_up", _help("seekstack_replica_up"), labels=labels)
        restarts = CounterMetricFamily("seekstack_replica_restarts", _help("seekstack_replica_restarts_total"), labels=labels)
        slots = GaugeMetricFamily("seekstack_replica_slots", _help("seekstack_replica_slots"), labels=labels)
        memory = GaugeMetricFamily("seekstack_replica_resident_memory_bytes", _help("seekstack_replica_resident_memory_bytes"), labels=labels)
        cpu = CounterMetricFamily("seekstack_replica_cpu_seconds", _help("seekstack_replica_cpu_seconds_total"), labels=labels)
        in_flight = GaugeMetricFamily("seekstack_requests_in_flight", _help("seekstack_requests_in_flight"), labels=["model", "replica"])
        kv_cache = GaugeMetricFamily("seekstack_endpoint_kv_cache_usage", _help("seekstack_endpoint_kv_cache_usage"),
                                     labels=["model", "address"])
        for replica in self.registry.endpoints():
            ids = [replica.model.name, str(replica.index), replica.model.engine.kind]
            if replica.state != "unloaded":  # meant to be down (an operator's unload, keep_alive): not an alert
                up.add_metric(ids, 1.0 if replica.routable else 0.0)
            restarts.add_metric(ids, replica.restarts)
            slots.add_metric(ids, replica.model.slots)
            in_flight.add_metric(ids[:2], replica.outstanding)
            if replica.load.kv_use is not None:  # the engine's own address: the same series on every gateway
                kv_cache.add_metric([replica.model.name, replica.backend.base_url], replica.load.kv_use)
            usage = _process_usage(replica.engine.pid)
            if usage is not None:
                memory.add_metric(ids, usage[0])
                cpu.add_metric(ids, usage[1])
        model_ready = GaugeMetricFamily("seekstack_model_ready", _help("seekstack_model_ready"), labels=["model"])
        ready_endpoints = GaugeMetricFamily("seekstack_model_ready_endpoints", _help("seekstack_model_ready_endpoints"),
                                            labels=["model"])
        for alias, state in self.registry.models().items():
            model_ready.add_metric([alias], 1.0 if state["state"] == "ready" else 0.0)
            ready_endpoints.add_metric([alias], state["ready_endpoints"])
        return [up, restarts, slots, in_flight, kv_cache, memory, cpu, model_ready, ready_endpoints]


class TrafficCollector(Collector):
    """Ejections, the models' queues, resumed streams and fallbacks (from the router), the
    autoscaler, rollouts and keep_alive."""

    def __init__(self, router, autoscaler=None, rollouts=None, keep_alive=None):
        self.router = router
        self.autoscaler = autoscaler
        self.rollouts = rollouts
        self.keep_alive = keep_alive

    def collect(self) -> Iterable[Metric]:
        ejected = GaugeMetricFamily("seekstack_endpoint_ejected", _help("seekstack_endpoint_ejected"), labels=["model", "endpoint"])
        ejections = CounterMetricFamily("seekstack_endpoint_ejections", _help("seekstack_endpoint_ejections_total"),
                                        labels=["model", "endpoint"])
        for endpoint in self.router.registry.endpoints():
            ids = [endpoint.model.name, endpoint.name]
            ejected.add_metric(ids, 1.0 if endpoint.breaker.state == "open" else 0.0)
            ejections.add_metric(ids, endpoint.breaker.ejections)
        waiting = GaugeMetricFamily("seekstack_queue_waiting", _help("seekstack_queue_waiting"), labels=["model"])
        rejected = CounterMetricFamily("seekstack_queue_rejected", _help("seekstack_queue_rejected_total"), labels=["model", "reason"])
        for queue in [self.router.queue(d) for d in self.router.registry.deployments()]:
            waiting.add_metric([queue.name], queue.waiting)
            for reason, count in queue.rejected.items():
                rejected.add_metric([queue.name, reason], count)
        resumed = CounterMetricFamily("seekstack_streams_resumed", _help("seekstack_streams_resumed_total"), labels=["model"])
        for model, count in self.router.resumed.items():
            resumed.add_metric([model], count)
        share = GaugeMetricFamily("seekstack_deployment_traffic_share", _help("seekstack_deployment_traffic_share"),
                                  labels=["model", "deployment", "version"])
        for alias in self.router.registry.aliases():
            deployments = self.router.registry.deployments(alias)
            total = sum(d.weight for d in deployments if d.weight > 0 and d.routable()) or 1
            for d in deployments:
                share.add_metric([alias, d.name, d.version or ""], d.weight / total if d.weight > 0 and d.routable() else 0.0)
        fallbacks = CounterMetricFamily("seekstack_fallbacks", _help("seekstack_fallbacks_total"), labels=["model", "to", "reason"])
        for labels, count in self.router.fallbacks.items():
            fallbacks.add_metric(list(labels), count)
        families = [ejected, ejections, waiting, rejected, resumed, fallbacks, share]
        if self.rollouts is not None:
            active = GaugeMetricFamily("seekstack_rollout_active", _help("seekstack_rollout_active"), labels=["model", "mode", "to"])
            for rollout in self.rollouts.active.values():
                active.add_metric([rollout.model, rollout.mode, rollout.to], 1.0)
            ended = CounterMetricFamily("seekstack_rollouts", _help("seekstack_rollouts_total"), labels=["model", "outcome"])
            for (model, outcome), count in self.rollouts.outcomes.items():
                ended.add_metric([model, outcome], count)
            families += [active, ended]
        if self.autoscaler is not None:
            utilization = GaugeMetricFamily("seekstack_autoscaler_utilization", _help("seekstack_autoscaler_utilization"),
                                            labels=["model"])
            replicas = GaugeMetricFamily("seekstack_autoscaler_replicas", _help("seekstack_autoscaler_replicas"),
                                         labels=["model"])
            decisions = CounterMetricFamily("seekstack_autoscaler_decisions", _help("seekstack_autoscaler_decisions_total"),
                                            labels=["model", "direction"])
            for row in self.autoscaler.describe():
                if row["utilization"] is not None:
                    utilization.add_metric([row["model"]], row["utilization"])
                replicas.add_metric([row["model"]], row["replicas"])
                for direction, count in row["decisions"].items():
                    decisions.add_metric([row["model"], direction], count)
            families += [utilization, replicas, decisions]
        if self.keep_alive is not None:
            actions = CounterMetricFamily("seekstack_keep_alive_actions", _help("seekstack_keep_alive_actions_total"),
                                          labels=["model", "action"])
            for (model, action), count in self.keep_alive.actions.items():
                actions.add_metric([model, action], count)
            families.append(actions)
            if self.keep_alive.room is not None:
                budget = GaugeMetricFamily("seekstack_memory_budget_bytes", _help("seekstack_memory_budget_bytes"),
                                           value=self.keep_alive.room.budget_bytes)
                planned = GaugeMetricFamily("seekstack_memory_planned_bytes", _help("seekstack_memory_planned_bytes"),
                                            labels=["model"])
                for model, held in self.keep_alive.planned().items():
                    planned.add_metric([model], held)
                families += [budget, planned]
        return families


def _process_usage(pid: int | None) -> tuple[float, float] | None:
    """(resident bytes, CPU seconds) of a process, or None when it is gone."""
    if pid is None:
        return None
    try:
        import psutil

        process = psutil.Process(pid)
        with process.oneshot():
            times = process.cpu_times()
            return float(process.memory_info().rss), times.user + times.system
    except Exception:  # exited between the listing and the read
        return None


class EngineMetrics(Collector):
    """The engines' own metrics, as of the last :meth:`scrape`."""

    def __init__(self, registry, http):
        self.registry = registry
        self.http = http
        self._families: list[Metric] = []

    async def scrape(self) -> None:
        replicas = [r for r in self.registry.endpoints() if r.routable]
        texts = await asyncio.gather(*(r.backend.metrics_page(SCRAPE_TIMEOUT_S) for r in replicas))
        self._families = relabel([(r.model.name, str(r.index), r.model.engine.kind, text)
                                  for r, text in zip(replicas, texts) if text])

    def collect(self) -> Iterable[Metric]:
        return self._families


def engine_metric_name(name: str) -> str | None:
    """``llamacpp:prompt_tokens_total`` → ``seekstack_engine_prompt_tokens_total``; names without an
    engine namespace (an engine's own process_* or python_* metrics) are left out."""
    namespace, sep, rest = name.partition(":")
    if not sep or not rest:
        return None
    return ENGINE_PREFIX + rest.replace(":", "_")


def relabel(sources: list[tuple[str, str, str, str]]) -> list[Metric]:
    """Merge engines' exposition texts ((model, replica, engine, text) each) into seekstack families."""
    merged: dict[str, Metric] = {}
    for model, replica, engine, text in sources:
        try:
            families = list(text_string_to_metric_families(text))
        except Exception as exc:  # a malformed page: skip this engine, keep the others
            log.warning("engine metrics of %s/%s are not Prometheus text: %s", model, replica, exc)
            continue
        for family in families:
            name = engine_metric_name(family.name)
            if name is None:
                continue
            target = merged.get(name)
            if target is None:
                target = merged[name] = Metric(name, family.documentation, family.type)
            for sample in family.samples:
                sample_name = engine_metric_name(sample.name)
                if sample_name is None:
                    continue
                target.add_sample(sample_name, {**sample.labels, "model": model, "replica": replica, "engine": engine},
                                  sample.value, sample.timestamp)
    return list(merged.values())


class GpuCollector(Collector):
    """NVIDIA GPUs through NVML (``pynvml``). ``nvml`` is injectable: the library is the outer edge."""

    def __init__(self, nvml: Any = None):
        self._nvml = nvml
        self._ready: bool | None = None

    def _init(self) -> bool:
        if self._ready is None:
            try:
                if self._nvml is None:
                    import pynvml

                    self._nvml = pynvml
                self._nvml.nvmlInit()
                self._ready = True
            except Exception:  # no driver, no library, no GPU: report zero GPUs
                self._ready = False
        return self._ready

    def collect(self) -> Iterable[Metric]:
        labels = ["gpu", "name"]
        count = GaugeMetricFamily("seekstack_gpus", _help("seekstack_gpus"))
        util = GaugeMetricFamily("seekstack_gpu_utilization_ratio", _help("seekstack_gpu_utilization_ratio"), labels=labels)
        used = GaugeMetricFamily("seekstack_gpu_memory_used_bytes", _help("seekstack_gpu_memory_used_bytes"), labels=labels)
        total = GaugeMetricFamily("seekstack_gpu_memory_total_bytes", _help("seekstack_gpu_memory_total_bytes"), labels=labels)
        temp = GaugeMetricFamily("seekstack_gpu_temperature_celsius", _help("seekstack_gpu_temperature_celsius"), labels=labels)
        power = GaugeMetricFamily("seekstack_gpu_power_watts", _help("seekstack_gpu_power_watts"), labels=labels)
        n = 0
        if self._init():
            nvml = self._nvml
            try:
                n = nvml.nvmlDeviceGetCount()
                for i in range(n):
                    handle = nvml.nvmlDeviceGetHandleByIndex(i)
                    name = nvml.nvmlDeviceGetName(handle)
                    ids = [str(i), name.decode() if isinstance(name, bytes) else str(name)]
                    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                    util.add_metric(ids, nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0)
                    used.add_metric(ids, float(memory.used))
                    total.add_metric(ids, float(memory.total))
                    temp.add_metric(ids, float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)))
                    power.add_metric(ids, nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
            except Exception as exc:  # a GPU that fell off the bus must not break the scrape
                log.warning("NVML read failed: %s", exc)
        count.add_metric([], n)
        return [count, util, used, total, temp, power]


GC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class GcCollector(Collector):
    """Garbage-collection pauses of the gateway, timed by a ``gc.callbacks`` hook, and the
    frozen start-up heap (``cli/serve.py`` freezes it so full collections stay short).

    Counted in plain lists, not a prometheus_client Histogram: the hook runs inside any
    allocation, and a Histogram's lock taken there could already be held by the interrupted code."""

    def __init__(self):
        self._buckets = {g: [0] * (len(GC_BUCKETS) + 1) for g in range(3)}
        self._sums = [0.0, 0.0, 0.0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause, generation = time.perf_counter() - self._started, info["generation"]
        self._sums[generation] += pause
        self._buckets[generation][bisect.bisect_left(GC_BUCKETS, pause)] += 1

    def close(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def collect(self) -> Iterable[Metric]:
        pauses = HistogramMetricFamily("seekstack_gc_pause_seconds", _help("seekstack_gc_pause_seconds"),
                                       labels=["generation"])
        for generation, counts in self._buckets.items():
            cumulative = list(itertools.accumulate(counts))
            buckets = [(str(b), c) for b, c in zip(GC_BUCKETS, cumulative)] + [("+Inf", cumulative[-1])]
            pauses.add_metric([str(generation)], buckets, self._sums[generation])
        yield pauses
        yield GaugeMetricFamily("seekstack_gc_frozen_objects", _help("seekstack_gc_frozen_objects"),
                                value=gc.get_freeze_count())


class AuditCollector(Collector):
    """The audit store: whether it takes writes, how full it is against its budget."""

    def __init__(self, audit):
        self.audit = audit

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("seekstack_audit_available", _help("seekstack_audit_available"),
                                value=float(self.audit.unavailable is None))
        try:
            used = self.audit.used_bytes()
        except Exception:  # the store is what is broken: the gauge above says so
            used = None
        if used is not None:
            yield GaugeMetricFamily("seekstack_audit_store_bytes", _help("seekstack_audit_store_bytes"), value=used)
        if self.audit.max_bytes is not None:
            yield GaugeMetricFamily("seekstack_audit_store_budget_bytes", _help("seekstack_audit_store_budget_bytes"),
                                    value=self.audit.max_bytes)
        yield GaugeMetricFamily("seekstack_audit_chain_diverged", _help("seekstack_audit_chain_diverged"),
                                value=float(self.audit.diverged is not None))


class FleetCollector(Collector):
    """The gateways on the governance database, as this gateway last read the roster (every
    10 s), and the policy sections in which this gateway differs from most of them."""

    def __init__(self, fleet):
        self.fleet = fleet

    def collect(self) -> Iterable[Metric]:
        from ..governance.roster import POLICY

        gateways = GaugeMetricFamily("seekstack_fleet_gateways", _help("seekstack_fleet_gateways"), labels=["state"])
        for state, count in self.fleet.counts.items():
            gateways.add_metric([state], count)
        yield gateways
        differs = GaugeMetricFamily("seekstack_gateway_policy_differs", _help("seekstack_gateway_policy_differs"),
                                    labels=["section"])
        for section in POLICY:
            differs.add_metric([section], float(section in self.fleet.differs))
        yield differs


class StaticCollector(Collector):
    def __init__(self, version: str, certificate_expiry: float | None):
        self.version = version
        self.certificate_expiry = certificate_expiry

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily("seekstack_build_info", _help("seekstack_build_info"), labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        if self.certificate_expiry is not None:
            yield GaugeMetricFamily("seekstack_tls_certificate_expiry_timestamp_seconds",
                                    _help("seekstack_tls_certificate_expiry_timestamp_seconds"), value=self.certificate_expiry)


def certificate_expiry(cert_path) -> float | None:
    """The notAfter time of the first certificate in a PEM file (Unix seconds)."""
    from cryptography import x509

    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return cert.not_valid_after_utc.timestamp()
