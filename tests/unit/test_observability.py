"""Observability parts on their own: engine relabelling, the NVML collector, TLS expiry, JSON logs."""

from __future__ import annotations

import datetime
import json
import logging
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fakes import FakeNVML
from seekstack.governance.policy import route_pattern
from seekstack.observability.collectors import GpuCollector, certificate_expiry, engine_metric_name, relabel
from seekstack.observability.logs import JsonFormatter

LLAMACPP = """# HELP llamacpp:tokens_predicted_total Number of generation tokens processed
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total {n}
# HELP llamacpp:requests_deferred Number of requests deferred
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 2
"""
VLLM = """# HELP vllm:num_requests_waiting Requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="deepseek-r1"} 3.0
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 1.0
"""


def render(collector) -> dict[tuple[str, frozenset], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples}


class _Fixed:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


def test_engine_metrics_are_renamed_and_labelled_and_merged_across_replicas():
    families = relabel([("m", "0", "llamacpp", LLAMACPP.format(n=5)), ("m", "1", "llamacpp", LLAMACPP.format(n=7)),
                        ("r1", "0", "vllm", VLLM)])
    samples = render(_Fixed(families))
    assert samples[("seekstack_engine_tokens_predicted_total", frozenset({"model": "m", "replica": "0", "engine": "llamacpp"}.items()))] == 5
    assert samples[("seekstack_engine_tokens_predicted_total", frozenset({"model": "m", "replica": "1", "engine": "llamacpp"}.items()))] == 7
    waiting = {"model": "r1", "replica": "0", "engine": "vllm", "model_name": "deepseek-r1"}
    assert samples[("seekstack_engine_num_requests_waiting", frozenset(waiting.items()))] == 3
    assert not any("python_gc" in name for name, _ in samples)  # an engine's own runtime metrics stay out


def test_a_malformed_engine_page_is_skipped_not_fatal():
    families = relabel([("m", "0", "llamacpp", "this is { not prometheus"), ("m", "1", "llamacpp", LLAMACPP.format(n=1))])
    assert [f.name for f in families] == ["seekstack_engine_tokens_predicted", "seekstack_engine_requests_deferred"]


def test_engine_metric_names():
    assert engine_metric_name("llamacpp:kv_cache_usage_ratio") == "seekstack_engine_kv_cache_usage_ratio"
    assert engine_metric_name("sglang:token_usage") == "seekstack_engine_token_usage"
    assert engine_metric_name("process_cpu_seconds_total") is None


def test_gpu_collector_reads_every_gpu_through_nvml():
    samples = render(GpuCollector(FakeNVML()))
    gpu1 = frozenset({"gpu": "1", "name": "NVIDIA H100 80GB HBM3"}.items())
    assert samples[("seekstack_gpus", frozenset())] == 2
    assert samples[("seekstack_gpu_utilization_ratio", gpu1)] == 0.88
    assert samples[("seekstack_gpu_memory_used_bytes", gpu1)] == 20 * 2**30
    assert samples[("seekstack_gpu_memory_total_bytes", gpu1)] == 80 * 2**30
    assert samples[("seekstack_gpu_temperature_celsius", gpu1)] == 61
    assert samples[("seekstack_gpu_power_watts", gpu1)] == 350.5


def test_gpu_collector_says_zero_gpus_when_nvml_cannot_start():
    class NoDriver(FakeNVML):
        def nvmlInit(self):
            raise OSError("NVML Shared Library Not Found")

    samples = render(GpuCollector(NoDriver()))
    assert samples == {("seekstack_gpus", frozenset()): 0}


def test_certificate_expiry_reads_not_after(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")])
    not_after = datetime.datetime(2031, 5, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))
            .not_valid_after(not_after).sign(key, hashes.SHA256()))
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    assert certificate_expiry(path) == not_after.timestamp()


def test_json_log_lines_carry_extra_fields():
    record = logging.LogRecord("seekstack.access", logging.INFO, __file__, 1, "request", (), None)
    record.request_id, record.status = "req_1", 200
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "seekstack.access" and line["request_id"] == "req_1" and line["status"] == 200
    assert line["level"] == "info" and line["ts"].endswith("+00:00")


def test_route_patterns_bound_the_route_label():
    assert route_pattern("DELETE", "/admin/v1/keys/k_123") == "/admin/v1/keys/{id}"
    assert route_pattern("POST", "/v1/chat/completions") == "/v1/chat/completions"
    assert route_pattern("GET", "/v1/anything/else") is None
