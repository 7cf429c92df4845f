"""The governance edge, in front of every route: authenticate, authorize, audit.

1. Probes (``/healthz``, ``/readyz``) pass untouched.
2. The key becomes a principal; the route must have a permission the principal's role
   grants (deny by default). A refusal is answered here and audited.
3. Quotas admit it (or 429 with Retry-After and x-ratelimit-* headers).
4. An admitted request is audited *before* it runs — :meth:`AuditLog.append` returns only
   once the record is committed, so when the audit log cannot be written the request is
   refused with 503 and nothing is served unaudited (fail-closed).
5. When the route finishes (a stream: after its last byte) an outcome record follows with
   the status, model, tokens and latency from the request's :class:`Meter`; the quota is
   settled (concurrency released, tokens charged) and usage is recorded.

The principal and meter land in ``request.state`` for the routes. Every response carries
``x-request-id``, the id in both audit records.
"""

from __future__ import annotations

import secrets
import time

import anyio

from ..errors import NotFoundError, SeekstackError
from ..governance import ANONYMOUS, Governance, route_permission
from ..governance.meter import Meter
from ..governance.policy import OPEN_ROUTES
from .errors import send_error


class GuardMiddleware:
    def __init__(self, app, governance: Governance, enabled: bool):
        self.app = app
        self.governance = governance
        self.enabled = enabled

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (scope["method"], scope["path"]) in OPEN_ROUTES:
            return await self.app(scope, receive, send)
        started = time.monotonic()
        method, path = scope["method"], scope["path"]
        request_id = "req_" + secrets.token_hex(8)
        record = {"event": "request", "request_id": request_id, "method": method, "endpoint": path,
                  "ip": scope["client"][0] if scope.get("client") else None}
        principal = None
        audit = self.governance.audit
        self.governance.refresh_if_changed()
        try:
            principal = self._principal(scope)
            record.update(key_id=principal.key_id, user=principal.user, team=principal.team, role=principal.role.name)
            permission = route_permission(method, path)
            if permission is None:
                raise NotFoundError(f"{method} {path} is not an endpoint of this server",
                                    fix="see the API reference for the endpoints")
            principal.require(permission, method, path)
            admission = await self.governance.quotas.admit(principal.key_id, principal.user, principal.team)
        except SeekstackError as exc:
            audit.append_nowait({**record, "decision": "deny", "reason": exc.code, "status": exc.status})
            return await refuse(send, exc, request_id)
        try:
            await audit.append({**record, "decision": "allow"})
        except SeekstackError as exc:
            await self.governance.quotas.settle(admission, 0)
            return await refuse(send, exc, request_id)

        meter = Meter(capture=self.governance.bodies is not None)
        state = scope.setdefault("state", {})
        state["principal"], state["meter"], state["request_id"] = principal, meter, request_id
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode()),
                                      *((k.encode(), v.encode()) for k, v in admission.headers.items())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            with anyio.CancelScope(shield=True):  # a client that left still counts
                await self.governance.quotas.settle(admission, meter.total_tokens)
            if meter.model is not None:
                self.governance.record_usage(principal, meter)
                if meter.capture and meter.request_body is not None:
                    important = any(k == b"x-seekstack-important" and v.lower() in (b"1", b"true", b"yes")
                                    for k, v in scope["headers"])
                    self.governance.bodies.store(request_id, {"request": meter.request_body,
                                                              "response": "".join(meter.response_parts)}, important)
            audit.append_nowait({
                "event": "response", "request_id": request_id, "key_id": principal.key_id, "team": principal.team,
                "endpoint": path, "model": meter.model, "status": status,
                "prompt_tokens": meter.prompt_tokens, "completion_tokens": meter.completion_tokens,
                "reasoning_tokens": meter.reasoning_tokens, "pii": meter.pii or None,
                "latency_ms": round((time.monotonic() - started) * 1000, 2)})

    def _principal(self, scope):
        if not self.enabled:
            return ANONYMOUS
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        return self.governance.auth.authenticate(authorization)


async def refuse(send, exc: SeekstackError, request_id: str) -> None:
    extra = [(b"x-request-id", request_id.encode())]
    if exc.status == 401:
        extra.append((b"www-authenticate", b'Bearer realm="seekstack"'))
    await send_error(send, exc, extra)
