"""The served OpenAPI document, and a bounded schemathesis run against a real gateway: no server errors."""

from __future__ import annotations

import copy
import re

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from seekstack.governance.policy import BUILTIN_ROLES, OPEN_ROUTES, ROUTES

from conftest import Server

schemathesis = pytest.importorskip("schemathesis")  # a test extra: `make test` installs it


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("fuzz"), {
        "models": [{"name": "m", "source": "embedded", "context": 256, "slots": 2, "threads": 1},
                   {"name": "e", "source": "embedded", "embeddings": True, "context": 128, "slots": 1, "threads": 1}],
        "server": {"source_limits": {"failures_per_minute": 100000, "audited_failures": 100000}}}).start()
    yield srv
    srv.stop()


def test_the_document_covers_the_route_table(fuzzed):
    assert httpx.get(fuzzed.url + "/openapi.json").status_code == 401  # a key is needed, like every route
    doc = fuzzed.http.get("/openapi.json").json()
    documented = {(m.upper(), re.sub(r"\{[^}]+\}", "{id}", p)) for p, ops in doc["paths"].items() for m in ops}
    assert documented == (set(ROUTES) - {("GET", "/openapi.json")}) | set(OPEN_ROUTES)
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["x-permission"] == "inference:chat" and chat["security"] == [{"bearer": []}]
    schemathesis.openapi.from_dict(doc)  # a valid OpenAPI document


def _keys(server: Server) -> dict[str, str]:
    state = server.key_path.parent
    return {role: (state / name).read_text().strip() for role, name in
            (("admin", "admin.key"), ("security_admin", "security-admin.key"), ("auditor", "auditor.key"))}


def test_a_bounded_fuzz_run_finds_no_server_error(fuzzed):
    doc = copy.deepcopy(fuzzed.http.get("/openapi.json").json())
    schemas = doc["components"]["schemas"]
    for name in ("ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest"):  # reach the engine, briefly
        schemas[name]["properties"]["model"] = {"enum": ["e"] if name == "EmbeddingRequest" else ["m"]}
        for field in ("max_tokens", "max_completion_tokens"):
            if field in schemas[name]["properties"]:
                schemas[name]["properties"][field] = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 8},
                                                                {"type": "null"}]}
    schema = schemathesis.openapi.from_dict(doc)
    keys = _keys(fuzzed)
    failures, ran = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        permission = doc["paths"][operation.path][operation.method.lower()].get("x-permission")
        role = next((r for r in keys if permission is None or BUILTIN_ROLES[r].grants(permission)), "admin")
        headers = {"Authorization": f"Bearer {keys[role]}"}
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(max_examples=12, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case):
                response = case.call(base_url=fuzzed.url, headers=headers, timeout=60)
                if response.status_code >= 500:
                    failures.append((operation.label, mode.value, response.status_code, response.text[:300]))

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
                assert mode is schemathesis.GenerationMode.NEGATIVE
            ran += 1
    assert not failures, failures
    assert ran >= 2 * (len(ROUTES) - 1)
    assert fuzzed.http.get("/readyz").status_code == 200
