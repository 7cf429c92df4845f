"""The served OpenAPI document, and a bounded schemathesis run against the gateway: no server errors.

In-process (tests/inprocess.py): the gateway's real app and lifespan, a llama.cpp-dialect simulator
behind it in a thread of its own; what the fuzz probes is the gateway's handling of every input."""

from __future__ import annotations

import copy
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from seekstack.governance.policy import BUILTIN_ROLES, OPEN_ROUTES, ROUTES

from inprocess import sync_gateway

schemathesis = pytest.importorskip("schemathesis")  # a test extra: `make test` installs it


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    with sync_gateway(tmp, [{"name": "m", "slots": 2}, {"name": "e", "embeddings": True, "context": 128, "slots": 1}],
                      names=("m", "e"), context=256,
                      config={"server": {"source_limits": {"failures_per_minute": 100000, "audited_failures": 100000}}}) \
            as (client, app, _):
        client.state = tmp / "state"
        yield client


def test_the_document_covers_the_route_table(fuzzed):
    assert fuzzed.get("/openapi.json", headers={"Authorization": ""}).status_code == 401  # a key is needed, like every route
    doc = fuzzed.get("/openapi.json").json()
    documented = {(m.upper(), re.sub(r"\{[^}]+\}", "{id}", p)) for p, ops in doc["paths"].items() for m in ops}
    api = {(m, p) for m, p in set(ROUTES) | set(OPEN_ROUTES) if not p.startswith("/console")}  # the console: pages
    assert documented == api - {("GET", "/openapi.json")}
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["x-permission"] == "inference:chat" and chat["security"] == [{"bearer": []}]
    schemathesis.openapi.from_dict(doc)  # a valid OpenAPI document


def _keys(fuzzed) -> dict[str, str]:
    state = fuzzed.state
    return {role: (state / name).read_text().strip() for role, name in
            (("admin", "admin.key"), ("security_admin", "security-admin.key"), ("auditor", "auditor.key"))}


def test_a_bounded_fuzz_run_finds_no_server_error(fuzzed):
    doc = copy.deepcopy(fuzzed.get("/openapi.json").json())
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
                kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
                cookies = kwargs.pop("cookies", None)  # per-request cookies: sent as the header they are
                if cookies:
                    kwargs["headers"] = {**kwargs.get("headers", {}), "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
                response = fuzzed.request(**kwargs)
                if response.status_code >= 500:
                    failures.append((operation.label, mode.value, response.status_code, response.text[:300]))

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters or body)
                assert mode is schemathesis.GenerationMode.NEGATIVE
            ran += 1
    assert not failures, failures
    assert ran >= 2 * (len([r for r in ROUTES if not r[1].startswith("/console")]) - 1)  # the console: pages
    assert fuzzed.get("/readyz").status_code == 200
