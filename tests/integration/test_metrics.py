"""/metrics on the real gateway: counters and histograms move by exactly what was sent.

Each test reads /metrics before and after its own requests and compares the difference;
tests run one at a time, so nothing else moves the series it looks at."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import as_key, engine_predicted, make_key, make_user

MODEL = "smollm2-135m"
CHAT = "/v1/chat/completions"
PHONE = "13812345678"


def scrape(server) -> dict[tuple[str, frozenset], float]:
    r = server.http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before, after, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def pinned_chat(c: httpx.Client, stream: bool, text: str = "one two three four") -> dict:
    """A chat whose answer a grammar pins; returns its usage."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Count."}], "max_tokens": 16,
            "grammar": f'root ::= "{text}"', "stream": stream}
    if not stream:
        r = c.post(CHAT, json=body)
        assert r.status_code == 200, r.text
        return r.json()["usage"]
    body["stream_options"] = {"include_usage": True}
    usage = None
    with c.stream("POST", CHAT, json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {") and '"usage"' in line:
                import json

                usage = json.loads(line[6:])["usage"] or usage
    return usage


def test_counters_and_histograms_move_by_exactly_the_requests_sent(server):
    before = scrape(server)
    usages = [pinned_chat(server.http, stream=True) for _ in range(4)] + [pinned_chat(server.http, stream=False) for _ in range(3)]
    after = scrape(server)
    ok = dict(route=CHAT, model=MODEL, status="200")
    assert delta(before, after, "seekstack_requests_total", **ok) == 7
    assert delta(before, after, "seekstack_request_duration_seconds_count", route=CHAT, model=MODEL) == 7
    assert delta(before, after, "seekstack_request_duration_seconds_bucket", route=CHAT, model=MODEL, le="+Inf") == 7
    # TTFT and TPOT: streamed requests only (vLLM's definitions), on the replica that answered
    assert delta(before, after, "seekstack_time_to_first_token_seconds_count", model=MODEL, replica="0") == 4
    assert delta(before, after, "seekstack_time_per_output_token_seconds_count", model=MODEL, replica="0") == 4
    assert delta(before, after, "seekstack_time_to_first_token_seconds_sum", model=MODEL, replica="0") > 0
    assert delta(before, after, "seekstack_prompt_tokens_total", model=MODEL) == sum(u["prompt_tokens"] for u in usages)
    assert delta(before, after, "seekstack_completion_tokens_total", model=MODEL) == sum(u["completion_tokens"] for u in usages)
    # the same prompt seven times: llama.cpp takes most of it from its cache, and says so
    cached = sum(u["prompt_cache_hit_tokens"] for u in usages)
    assert cached > 0 and delta(before, after, "seekstack_prompt_cached_tokens_total", model=MODEL) == cached
    # every admitted request waited for its audit record (the scrape before this one too)
    assert delta(before, after, "seekstack_audit_write_seconds_count") == 7 + 1


def test_histogram_buckets_are_cumulative_and_latency_bounds_ttft(server):
    pinned_chat(server.http, stream=True)
    samples = scrape(server)
    buckets = sorted(((float(dict(labels)["le"]), v) for (name, labels), v in samples.items()
                      if name == "seekstack_time_to_first_token_seconds_bucket" and dict(labels)["model"] == MODEL
                      and dict(labels)["replica"] == "0"))  # one series: earlier tests may have used other replicas
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == value(samples, "seekstack_time_to_first_token_seconds_count",
                                                            model=MODEL, replica="0")
    ttft = value(samples, "seekstack_time_to_first_token_seconds_sum", model=MODEL, replica="0")
    latency = value(samples, "seekstack_request_duration_seconds_sum", route=CHAT, model=MODEL)
    assert 0 < ttft < latency


def test_refusals_count_under_their_reason(server, role_keys):
    before = scrape(server)
    with as_key(server, "sk-not-a-key") as c:
        assert c.post(CHAT, json={"model": MODEL, "messages": []}).status_code == 401
    with as_key(server, role_keys["api_consumer"]) as c:
        assert c.get("/metrics").status_code == 403
        too_long = c.post(CHAT, json={"model": "smollm2-small-ctx", "max_tokens": 16,
                                      "messages": [{"role": "user", "content": "word " * 400}]})
        assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"
        assert c.post(CHAT, json={"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}).status_code == 404
        assert c.get("/v1/not/a/route/12345").status_code == 404
    after = scrape(server)
    for route, reason in [(CHAT, "invalid_api_key"), ("/metrics", "permission_denied"), (CHAT, "context_length_exceeded"),
                          (CHAT, "model_not_found"), ("unknown", "not_found")]:
        assert delta(before, after, "seekstack_rejected_requests_total", route=route, reason=reason) == 1, (route, reason)
    assert delta(before, after, "seekstack_requests_total", route=CHAT, model="", status="401") == 1
    assert delta(before, after, "seekstack_requests_total", route="/metrics", model="", status="403") == 1
    # the raw path of an unknown route never becomes a label
    assert not any("12345" in str(labels) for _, labels in after)


def test_quota_rejections_count_by_scope_and_limit(server):
    key = make_key(server, make_user(server, "api_consumer"))
    with as_key(server, key) as c:
        key_id = c.get("/admin/v1/whoami").json()["key_id"]
        assert server.security.put("/admin/v1/limits", json={"scope": "key", "name": key_id, "concurrent": 0}).status_code == 200
        before = scrape(server)
        assert c.get("/v1/models").status_code == 429
        assert c.get("/v1/models").status_code == 429
    after = scrape(server)
    assert delta(before, after, "seekstack_quota_rejections_total", scope="key", limit="concurrent_requests") == 2
    assert delta(before, after, "seekstack_rejected_requests_total", route="/v1/models", reason="rate_limit_exceeded") == 2


def test_pii_detections_count_by_class(server):
    before = scrape(server)
    pinned_chat(server.http, stream=False, text="noted")  # no PII
    r = server.http.post(CHAT, json={"model": MODEL, "max_tokens": 4, "grammar": 'root ::= "ok"',
                                     "messages": [{"role": "user", "content": f"call {PHONE} or a.b@example.com"}]})
    assert r.status_code == 200
    after = scrape(server)
    assert delta(before, after, "seekstack_pii_detections_total", **{"class": "cn_mobile"}) == 1
    assert delta(before, after, "seekstack_pii_detections_total", **{"class": "email"}) == 1


def test_replicas_engines_process_and_gpu_are_exposed(server):
    pinned_chat(server.http, stream=False)
    samples = scrape(server)
    replicas = server.replicas()
    for r in replicas:
        ids = dict(model=r["model"], replica=str(r["replica"]), engine="llamacpp")
        assert value(samples, "seekstack_replica_up", **ids) == 1
        assert value(samples, "seekstack_replica_slots", **ids) >= 1
        assert value(samples, "seekstack_replica_resident_memory_bytes", **ids) > 10_000_000
        assert value(samples, "seekstack_requests_in_flight", model=r["model"], replica=str(r["replica"])) == 0
    # the engine's own counter, renamed and labelled, equals what the engine itself reports now
    chat_replica = next(r for r in replicas if r["model"] == MODEL)
    assert value(samples, "seekstack_engine_tokens_predicted_total", model=MODEL, replica="0", engine="llamacpp") \
        == engine_predicted(chat_replica["base_url"])
    assert value(samples, "seekstack_process_resident_memory_bytes") > 10_000_000
    assert value(samples, "seekstack_process_cpu_seconds_total") > 0
    assert value(samples, "seekstack_gpus") == 0  # this machine has no GPU; NVML is tried and says so
    # the start-up heap was frozen once the server was ready, and collections are timed
    assert value(samples, "seekstack_gc_frozen_objects") > 10_000
    assert value(samples, "seekstack_gc_pause_seconds_count", generation="0") > 0
    assert not any(name.startswith("llamacpp:") for name, _ in samples)


@pytest.mark.parametrize("role,status", [("model_operator", 200), ("data_analyst", 200), ("admin", 200),
                                         ("api_consumer", 403), ("auditor", 403)])
def test_metrics_need_the_metrics_read_permission(server, role_keys, role, status):
    with as_key(server, role_keys[role]) as c:
        assert c.get("/metrics").status_code == status
    assert httpx.get(server.url + "/metrics").status_code == 401


def test_a_dedicated_scrape_key_reads_metrics_and_nothing_else(server):
    """Prometheus gets a key of its own: a user whose role grants only metrics:read, limited to /metrics."""
    key = make_key(server, make_user(server, "data_analyst"), endpoints=["/metrics"])
    with as_key(server, key) as c:
        assert c.get("/metrics").status_code == 200
        assert c.get("/v1/models").status_code == 403


def test_in_flight_and_queued_follow_the_engine_slots(server):
    """Five long streams on a replica with two slots: two in flight on it, three waiting in the
    gateway's queue for a slot (not inside the engine)."""
    import threading
    import time

    stop = threading.Event()

    def hold():
        body = {"model": "smollm2-small-ctx", "max_tokens": 200, "ignore_eos": True, "stream": True,
                "messages": [{"role": "user", "content": "Go on."}]}
        with httpx.Client(base_url=server.url, headers=server.http.headers, timeout=60) as c:
            with c.stream("POST", CHAT, json=body) as r:
                for _ in r.iter_bytes():
                    if stop.is_set():
                        return

    threads = [threading.Thread(target=hold) for _ in range(5)]
    for t in threads:
        t.start()
    try:
        ids = dict(model="smollm2-small-ctx", replica="0")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            samples = scrape(server)
            if value(samples, "seekstack_queue_waiting", model="smollm2-small-ctx") == 3:
                break
            time.sleep(0.1)
        assert value(samples, "seekstack_requests_in_flight", **ids) == 2
        assert value(samples, "seekstack_queue_waiting", model="smollm2-small-ctx") == 3
        assert value(samples, "seekstack_replica_slots", engine="llamacpp", **ids) == 2
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    deadline = time.monotonic() + 20
    while value(scrape(server), "seekstack_requests_in_flight", **ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert value(scrape(server), "seekstack_requests_in_flight", **ids) == 0
