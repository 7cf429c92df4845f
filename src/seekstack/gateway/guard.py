"""The governance edge, in front of every route: authenticate, authorize, audit.

1. Probes (``/healthz``, ``/readyz``) pass untouched.
2. The client address is checked against its per-source limits (:mod:`.sources`); refusals
   before authentication are audited one by one only up to a bound per address.
   The key becomes a principal; the route must have a permission the principal's role
   grants (deny by default). A refusal is answered here and audited.
3. Quotas admit it (or 429 with Retry-After and x-ratelimit-* headers).
4. An admitted request is audited *before* it runs — :meth:`AuditLog.append` returns only
   once the record is committed, so when the audit log cannot be written the request is
   refused with 503 and nothing is served unaudited (fail-closed). Alone (nothing else in
   flight) it commits at once; under load, records of one loop turn share a commit.
5. When the route finishes (a stream: after its last byte) the meter's deferred accounting
   runs (:meth:`Meter.run_after`), then an outcome record follows with the status, model (and
   the model asked for, when a fallback answered), tokens, PII classes and latency from the
   request's :class:`Meter`; the quota is settled (concurrency released, tokens charged) and
   usage is recorded.

The principal, meter and trace land in ``request.state`` for the routes. Every response
carries ``x-request-id``, the id in both audit records (and ``x-trace-id`` when tracing is
on). When the request ends — refused or answered — metrics, the trace and one access-log
line are written (``_finish``).
"""

from __future__ import annotations

import base64
import itertools
import logging
import secrets
import time
from typing import NamedTuple

import anyio

from ..console.errors import is_console_page, send_console_error
from ..errors import AuthenticationError, NotFoundError, PermissionDeniedError, RateLimitError, SeekstackError
from ..governance import ANONYMOUS, Governance
from ..governance.meter import Meter
from ..governance.policy import OPEN_PREFIXES, OPEN_ROUTES, ROUTES, route_pattern
from ..governance.sessions import COOKIE
from ..observability import Observability, stage
from .errors import send_error
from .sources import SourceGuard

access_log = logging.getLogger("seekstack.access")
# Request ids: a random tag per process start and a counter — unique, never reused, and no
# system call per request (they need not be secret: they only join the two audit records).
_PROCESS_TAG = secrets.token_hex(4)
_REQUEST_NUMBERS = itertools.count()
MAX_RECORDED_PATH = 256  # a request path is cut to this in audit records: a client chooses its length


class GuardMiddleware:
    def __init__(self, app, governance: Governance, enabled: bool, observability: Observability, sources: SourceGuard):
        self.app = app
        self.governance = governance
        self.sources = sources
        self.enabled = enabled
        self.metrics = observability.metrics
        self.tracing = observability.tracing
        self.in_flight = 0  # admitted requests between their audit record and their end

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (scope["method"], scope["path"]) in OPEN_ROUTES \
                or scope["path"].startswith(OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        started = time.monotonic()
        method, path = scope["method"], scope["path"]
        pattern = route_pattern(method, path)  # matched once: the metrics label and the permission
        route = pattern or "unknown"  # a bounded label: never the raw path
        request_id = f"req_{_PROCESS_TAG}{next(_REQUEST_NUMBERS):08x}"
        trace = self.tracing.begin(method, route, scope["headers"])
        ids = [(b"x-request-id", request_id.encode())]
        if trace is not None:
            ids.append((b"x-trace-id", trace.trace_id.encode()))
        ip = scope["client"][0] if scope.get("client") else None
        record = {"event": "request", "request_id": request_id, "method": method, "endpoint": bounded_path(path),
                  "ip": ip}
        if trace is not None:
            record["trace_id"] = trace.trace_id
        principal = None
        audit = self.governance.audit
        self.governance.refresh_if_changed()
        try:
            wait = self.sources.admit(ip)
            if wait is not None:
                raise RateLimitError("too many requests from this address", fix="slow down",
                                     retry_after=max(1, round(wait + 0.5)), scope="source", limit="requests_per_second")
            with stage(trace, "authenticate"):
                proof = await self._principal(scope)
                if isinstance(proof, PasswordAttempt):  # scrypt: ~50 ms, in a worker thread
                    record["attempted_user"] = proof.user[:64]  # a failed sign-in says for whom (never the password)
                    proof = await self.governance.sign_in_with_password(proof.user, proof.password)
                principal = proof
            record.update(key_id=principal.key_id, user=principal.user, team=principal.team, role=principal.role.name)
            with stage(trace, "authorize"):
                permission = ROUTES[(method, pattern)] if pattern is not None else None
                if permission is None:
                    raise NotFoundError(f"{method} {path} is not an endpoint of this server",
                                        fix="see the API reference for the endpoints")
                principal.require(permission, method, path)
            with stage(trace, "quota"):
                admission = await self.governance.quotas.admit(principal.key_id, principal.user, principal.team)
        except SeekstackError as exc:
            if principal is None:  # refused before authentication: 429 past the source's limit
                exc = self._before_authentication(exc, ip)
            if principal is not None or self.sources.refused(ip):  # anonymous refusals: bounded per source
                audit.append_nowait({**record, "decision": "deny", "reason": exc.code, "status": exc.status})
            if isinstance(exc, RateLimitError) and self.metrics is not None:
                self.metrics.quota_rejected(exc.scope, exc.limit)
            self._finish(route, exc.status, started, None, exc.code, request_id, trace, principal, method)
            return await refuse(scope, send, exc, ids)
        try:
            with stage(trace, "audit"):
                before_audit = time.monotonic()
                await audit.append({**record, "decision": "allow"}, alone=self.in_flight == 0)
                audit_wait = time.monotonic() - before_audit
        except SeekstackError as exc:
            await self.governance.quotas.settle(admission, 0)
            self._finish(route, exc.status, started, None, exc.code, request_id, trace, principal, method)
            return await refuse(scope, send, exc, ids)

        meter = Meter(capture=self.governance.bodies is not None, started=started)
        state = scope.setdefault("state", {})
        state["principal"], state["meter"], state["request_id"], state["trace"] = principal, meter, request_id, trace
        state["admission"] = admission  # the inference service reserves the request's tokens on it
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), *ids,
                                      *((k.encode(), v.encode()) for k, v in admission.headers.items())]
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.in_flight -= 1
            with anyio.CancelScope(shield=True):  # a client that left still counts
                await meter.run_after()
                await self.governance.quotas.settle(admission, charged_tokens(meter, admission))
            if meter.capture and meter.request_body is not None and meter.model is not None \
                    and (status < 400 or meter.total_tokens):  # refused before the engine: no body to keep
                important = any(k == b"x-seekstack-important" and v.lower() in (b"1", b"true", b"yes")
                                for k, v in scope["headers"])
                self.governance.bodies.store(request_id, {"request": meter.request_body, "team": principal.team,
                                                          "response": "".join(meter.response_parts)}, important)
            latency = self._finish(route, status, started, meter, state.get("error_code"), request_id, trace,
                                   principal, method)
            if self.metrics is not None:  # observed now, not between the commit and the route
                self.metrics.audit_write.observe(audit_wait)
            outcome = {  # usage is counted from these records (Governance.count_usage)
                "event": "response", "request_id": request_id, "key_id": principal.key_id, "user": principal.user,
                "team": principal.team,
                "endpoint": bounded_path(path), "model": meter.model, "status": status,
                "prompt_tokens": meter.prompt_tokens, "completion_tokens": meter.completion_tokens,
                "reasoning_tokens": meter.reasoning_tokens, "pii": meter.pii or None,
                "latency_ms": round(latency * 1000, 2)}
            if meter.fallback_from is not None:  # the model asked for; `model` answered in its place
                outcome["fallback_from"] = meter.fallback_from
            audit.append_nowait(outcome)

    def _finish(self, route, status, started, meter, error_code, request_id, trace, principal, method) -> float:
        """Metrics, trace and the access-log line of a finished (or refused) request; returns its latency."""
        latency = time.monotonic() - started
        if self.metrics is not None:
            self.metrics.observe(route, status, latency, meter, error_code)
        model = meter.model if meter is not None else None
        if trace is not None:
            if meter is not None and meter.first_token_at:
                trace.add("stream", meter.first_token_at, meter.last_token_at or meter.first_token_at)
            self.tracing.end(trace, status, {"seekstack.model": model, "seekstack.request_id": request_id,
                                             "seekstack.team": principal.team if principal else None})
        access_log.info("request", extra={
            "request_id": request_id, "trace_id": trace.trace_id if trace is not None else None,
            "method": method, "route": route, "status": status, "model": model,
            "key_id": principal.key_id if principal else None, "error": error_code,
            "prompt_tokens": meter.prompt_tokens if meter else None,
            "completion_tokens": meter.completion_tokens if meter else None,
            "latency_ms": round(latency * 1000, 2)})
        return latency

    def _before_authentication(self, exc: SeekstackError, ip: str | None) -> SeekstackError:
        """A source past its refusals a minute gets 429 for requests without a valid key."""
        retry = self.sources.blocked(ip) if isinstance(exc, AuthenticationError) else None
        if retry is None:
            return exc
        return RateLimitError("too many refused requests from this address", retry_after=retry,
                              fix="send a valid API key; refused requests are limited per address",
                              scope="source", limit="failures_per_minute")

    async def _principal(self, scope):
        """The caller: its API key (``Authorization: Bearer``), else its console session (the
        cookie), whose every write must carry the session's CSRF token (``X-CSRF-Token``)."""
        if not self.enabled:
            await self.governance.look_up(None)
            return ANONYMOUS
        authorization = token = csrf = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"cookie" and token is None:
                token = session_token(value.decode("latin-1"))
            elif name == b"x-csrf-token":
                csrf = value.decode("latin-1")
        await self.governance.look_up(authorization, token)  # what the caches lack: read off the event loop
        if authorization is not None and authorization[:6].lower() == "basic " and \
                (scope["method"], scope["path"]) == SIGN_IN:  # a console password: signing in, nothing else
            return PasswordAttempt.of(authorization[6:])
        if authorization is not None or token is None:
            return self.governance.auth.authenticate(authorization)
        sessions = self.governance.sessions
        sid, kid = sessions.key_of(token)
        principal = self.governance.auth.authenticate_session(kid)
        scope.setdefault("state", {})["session"] = sid
        if scope["method"] not in ("GET", "HEAD") and not sessions.csrf_ok(sid, csrf):
            raise PermissionDeniedError("this write carries no valid CSRF token",
                                        fix="send the session's token in the X-CSRF-Token header (the console does)")
        return principal


SIGN_IN = ("POST", "/console/session")


class PasswordAttempt(NamedTuple):
    user: str
    password: str

    @classmethod
    def of(cls, credentials: str) -> "PasswordAttempt":
        try:
            user, sep, password = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise AuthenticationError("the Authorization header must be `Basic base64(user:password)`",
                                      fix="sign in with the console's form")
        return cls(user, password)


def session_token(cookies: str) -> str | None:
    """The console session's token in a ``Cookie`` header, or None."""
    for part in cookies.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def charged_tokens(meter: Meter, admission) -> int:
    """What a finished request costs its token limits: what the engine reported, or — a stream
    cut before its usage arrived (the client left) — all it had reserved, so that leaving early
    is never a way around a budget."""
    if meter.total_tokens or not meter.first_token_at:
        return meter.total_tokens
    return admission.reserved


def bounded_path(path: str) -> str:
    return path if len(path) <= MAX_RECORDED_PATH else path[:MAX_RECORDED_PATH] + f"…(+{len(path) - MAX_RECORDED_PATH})"


async def refuse(scope, send, exc: SeekstackError, ids: list[tuple[bytes, bytes]]) -> None:
    if is_console_page(scope):  # a page a person is looking at: a page, or the sign-in form
        return await send_console_error(scope, send, exc, ids)
    extra = list(ids)
    if exc.status == 401:
        extra.append((b"www-authenticate", b'Bearer realm="seekstack"'))
    await send_error(send, exc, extra)
