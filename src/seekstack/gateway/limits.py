"""Refuse request bodies over ``server.max_body_bytes`` with 413, before the app reads them,
and bodies that stop arriving for ``server.body_timeout`` seconds with 408."""

from __future__ import annotations

import anyio

from ..errors import PayloadTooLargeError, RequestTimeoutError
from .errors import send_error


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int, timeout: float = 30.0):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, send)
        seen, complete = 0, False

        async def counting_receive():
            nonlocal seen, complete
            if complete:  # after the body, receive waits for a disconnect as long as the response runs
                return await receive()
            with anyio.move_on_after(self.timeout) as waited:
                message = await receive()
            if waited.cancelled_caught:
                raise _TooSlow()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._refuse(scope, send)
        except _TooSlow:
            scope.setdefault("state", {})["error_code"] = RequestTimeoutError.code
            await send_error(send, RequestTimeoutError(f"the request body stopped arriving for {self.timeout:g} s",
                                                       fix="send the whole body promptly"), [(b"connection", b"close")])

    async def _refuse(self, scope, send):
        scope.setdefault("state", {})["error_code"] = PayloadTooLargeError.code
        await send_error(send, PayloadTooLargeError(f"request body is larger than the limit of {self.max_bytes} bytes",
                                                    fix="send a smaller body or raise server.max_body_bytes"),
                         [(b"connection", b"close")])


class BodyRefused(Exception):
    """Raised from receive() through the app to this middleware, which answers: the app lets it pass."""


class _TooLarge(BodyRefused):
    pass


class _TooSlow(BodyRefused):
    pass
