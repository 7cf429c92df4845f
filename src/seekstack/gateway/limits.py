"""Refuse request bodies over ``server.max_body_bytes`` with 413, before the app reads them."""

from __future__ import annotations

from ..errors import PayloadTooLargeError
from .errors import send_error


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._refuse(scope, send)

    async def _refuse(self, scope, send):
        scope.setdefault("state", {})["error_code"] = PayloadTooLargeError.code
        await send_error(send, PayloadTooLargeError(f"request body is larger than the limit of {self.max_bytes} bytes",
                                                    fix="send a smaller body or raise server.max_body_bytes"),
                         [(b"connection", b"close")])


class _TooLarge(Exception):
    pass
