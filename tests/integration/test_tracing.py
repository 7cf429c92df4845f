"""Tracing and logs through a real gateway: spans per stage arrive at an OTLP/HTTP receiver on
loopback, the trace id comes back in `x-trace-id` and lands in the audit record, and the JSON
log has request ids but never prompt text."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import EMBEDDED, Server, as_key, make_key, make_user, unique, auditor_key

CHAT = "/v1/chat/completions"


class Receiver:
    """An OTLP/HTTP traces endpoint: the collector, at the outer edge."""

    def __init__(self):
        self.spans: list = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    for scope_spans in resource_spans.scope_spans:
                        received.extend(scope_spans.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/traces"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def trace(self, trace_id: str, expect: int, timeout: float = 15.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = [s for s in self.spans if s.trace_id.hex() == trace_id]
            if len(spans) >= expect:
                return spans
            time.sleep(0.05)
        raise AssertionError(f"{len([s for s in self.spans if s.trace_id.hex() == trace_id])} spans of {trace_id} arrived")


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    receiver = Receiver()
    import os

    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # export every 100 ms instead of 5 s
    try:
        server = Server(tmp_path_factory.mktemp("traced"), {
            "models": [EMBEDDED], "observability": {"tracing": {"enabled": True, "endpoint": receiver.url}}}).start()
    finally:
        del os.environ["OTEL_BSP_SCHEDULE_DELAY"]
    yield server, receiver
    server.stop()
    receiver.httpd.shutdown()


def by_name(spans) -> dict:
    return {s.name: s for s in spans}


def test_a_stream_is_traced_stage_by_stage_under_the_callers_trace(traced):
    server, receiver = traced
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with server.http.stream("POST", CHAT, headers={"traceparent": f"00-{trace_id}-{parent}-01"}, json={
            "model": "smollm2-135m", "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": "Hi"}]}) as r:
        assert r.status_code == 200
        assert r.headers["x-trace-id"] == trace_id
        list(r.iter_lines())
    spans = by_name(receiver.trace(trace_id, 9))
    root = spans["POST /v1/chat/completions"]
    assert root.parent_span_id.hex() == parent  # continues the caller's trace
    stages = ["authenticate", "authorize", "quota", "audit", "pii", "route", "engine_ttft", "stream"]
    for name in stages:
        span = spans[name]
        assert span.parent_span_id == root.span_id, name
        assert root.start_time_unix_nano <= span.start_time_unix_nano <= span.end_time_unix_nano <= root.end_time_unix_nano, name
    # in order: the stream starts when the engine's first token arrives
    assert spans["quota"].start_time_unix_nano >= spans["authorize"].end_time_unix_nano
    assert spans["engine_ttft"].end_time_unix_nano <= spans["stream"].start_time_unix_nano + 1_000
    # PII `detect` (the default) changes nothing sent: the prompt is counted after the answer, off the first token's way
    assert spans["pii"].start_time_unix_nano >= spans["engine_ttft"].end_time_unix_nano
    attributes = {a.key: a.value for a in root.attributes}
    assert attributes["http.response.status_code"].int_value == 200
    assert attributes["seekstack.model"].string_value == "smollm2-135m"


def test_the_trace_id_is_in_the_audit_record_and_a_refusal_is_traced(traced):
    server, receiver = traced
    r = server.http.post(CHAT, json={"model": "smollm2-135m", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200
    trace_id = r.headers["x-trace-id"]
    spans = by_name(receiver.trace(trace_id, 7))
    assert "engine" in spans and "stream" not in spans  # non-streamed: one engine span
    with as_key(server, auditor_key(server)) as auditor:
        records = auditor.get("/admin/v1/audit", params={"limit": 1000}).json()["data"]
    request = next(x for x in records if x.get("request_id") == r.headers["x-request-id"] and x["event"] == "request")
    assert request["trace_id"] == trace_id

    with as_key(server, "sk-wrong") as c:
        refused = c.post(CHAT, json={})
    assert refused.status_code == 401
    spans = by_name(receiver.trace(refused.headers["x-trace-id"], 2))
    root = spans["POST /v1/chat/completions"]
    assert {a.key: a.value for a in root.attributes}["http.response.status_code"].int_value == 401


def test_logs_are_json_with_request_ids_and_never_prompt_text(traced):
    server, _ = traced
    secret = unique("prompt-text-that-must-not-be-logged-")
    r = server.http.post(CHAT, json={"model": "smollm2-135m", "max_tokens": 4,
                                     "messages": [{"role": "user", "content": secret}]})
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    access = []
    while time.monotonic() < deadline and not access:
        lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
        access = [x for x in lines if x.get("request_id") == r.headers["x-request-id"]]
        time.sleep(0.1)
    (line,) = access
    assert line["logger"] == "seekstack.access" and line["status"] == 200 and line["trace_id"] == r.headers["x-trace-id"]
    assert line["route"] == CHAT and line["model"] == "smollm2-135m" and line["completion_tokens"] >= 1
    assert all(isinstance(x, dict) for x in lines) and len(lines) > 3
    assert secret not in server.log_path.read_text()


def test_without_tracing_there_is_no_trace_header(server):
    r = server.http.get("/v1/models")
    assert r.status_code == 200 and "x-request-id" in r.headers and "x-trace-id" not in r.headers
