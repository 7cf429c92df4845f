"""The OpenAPI document of `/v1`, `/api` (Ollama's) and `/admin/v1`, served at ``GET /openapi.json``.

Derived from the one route table (:data:`~seekstack.governance.policy.ROUTES`): every route
the policy knows is documented — the OpenAI routes from the request models in
:mod:`seekstack.protocol` (they are served outside FastAPI's router, for speed), the admin
routes from FastAPI's own description of them — and nothing else is. Each operation names
the permission it needs; errors are OpenAI error JSON.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from .. import __version__
from ..governance.policy import OPEN_ROUTES, ROUTES
from ..protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RerankRequest

REF = "#/components/schemas/{model}"
OPENAI_REQUESTS: dict[tuple[str, str], tuple[type[BaseModel] | None, str]] = {
    ("POST", "/v1/chat/completions"): (ChatCompletionRequest, "Create a chat completion (streamed with `stream: true`)."),
    ("POST", "/v1/completions"): (CompletionRequest, "Create a text completion (streamed with `stream: true`)."),
    ("POST", "/v1/embeddings"): (EmbeddingRequest, "Embed text or token ids."),
    ("POST", "/v1/rerank"): (RerankRequest, "Score documents against a query, best first (a reranker model)."),
    ("GET", "/v1/models"): (None, "List the models this key may use."),
}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}


def openapi_document(app) -> dict[str, Any]:
    admin = get_openapi(title="seekstack", version=__version__, routes=app.routes)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "seekstack", "version": __version__,
                 "description": "OpenAI- and DeepSeek-compatible API, and the admin API, of a seekstack gateway."},
        "paths": {},
        "components": {"schemas": {"Error": ERROR, **admin.get("components", {}).get("schemas", {})},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
    by_pattern = {re.sub(r"\{[^}]+\}", "{id}", path): path for path in admin["paths"]}  # {kid} → the table's {id}
    for (method, path), permission in ROUTES.items():
        if (method, path) in OPENAI_REQUESTS:
            operation = _openai_operation(doc, method, path)
        else:
            path = by_pattern.get(path, path)
            operation = admin["paths"].get(path, {}).get(method.lower())
        if operation is None:
            continue
        operation = {**operation, "security": [{"bearer": []}], "x-permission": permission}
        operation.setdefault("responses", {})["default"] = {
            "description": "An error, as OpenAI's error JSON",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        doc["paths"].setdefault(path, {})[method.lower()] = operation
    for method, path in sorted(OPEN_ROUTES):
        if path in admin["paths"] and method.lower() in admin["paths"][path]:
            doc["paths"].setdefault(path, {})[method.lower()] = admin["paths"][path][method.lower()]
    return doc


def _openai_operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    model, summary = OPENAI_REQUESTS[(method, path)]
    operation: dict[str, Any] = {"summary": summary, "operationId": path.strip("/").replace("/", "_"),
                                 "responses": {"200": {"description": "The answer; a stream of server-sent events "
                                                                      "with `stream: true`",
                                                       "content": {"application/json": {"schema": {"type": "object"}},
                                                                   "text/event-stream": {"schema": {"type": "string"}}}}}}
    if model is not None:
        schema = model.model_json_schema(ref_template=REF)
        doc["components"]["schemas"].update(schema.pop("$defs", {}))
        doc["components"]["schemas"][model.__name__] = schema
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": REF.format(model=model.__name__)}}}}
    return operation
