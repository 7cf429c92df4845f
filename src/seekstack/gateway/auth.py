"""Authentication and endpoint authorization for every request, before any route runs.

Deny by default: a route with no permission in ``governance.policy.ROUTES`` is refused.
The principal lands in ``scope["state"]["principal"]`` (``request.state.principal``) for the
routes, which check what depends on the body (the model) themselves.
"""

from __future__ import annotations

from ..errors import NotFoundError, SeekstackError
from ..governance import ANONYMOUS, Governance, route_permission
from ..governance.policy import OPEN_ROUTES
from .errors import error_body


class AuthMiddleware:
    def __init__(self, app, governance: Governance | None, enabled: bool):
        self.app = app
        self.governance = governance
        self.enabled = enabled

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        if (method, path) in OPEN_ROUTES:
            return await self.app(scope, receive, send)
        try:
            principal = self._principal(scope)
            permission = route_permission(method, path)
            if permission is None:
                raise NotFoundError(f"{method} {path} is not an endpoint of this server",
                                    fix="see the API reference for the endpoints")
            principal.require(permission, method, path)
        except SeekstackError as exc:
            return await _refuse(send, exc)
        scope.setdefault("state", {})["principal"] = principal
        return await self.app(scope, receive, send)

    def _principal(self, scope):
        if not self.enabled:
            return ANONYMOUS
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        return self.governance.auth.authenticate(authorization)


async def _refuse(send, exc: SeekstackError) -> None:
    message = exc.message if not exc.fix else f"{exc.message}. {exc.fix}"
    body = error_body(message, exc.error_type, exc.code, exc.param)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="seekstack"'))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
