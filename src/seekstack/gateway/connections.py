"""Connections that slow or numerous clients cannot use to hold the gateway's sockets.

uvicorn waits for a request's headers as long as the client likes, and accepts as many
connections as the kernel hands it. :func:`bounded_protocol` makes its HTTP protocol class
close a connection whose request headers have not all arrived within ``header_timeout``
seconds (from the connection or from the request's first byte), and refuse connections past
``max_connections`` at once. A body that stops arriving is the guard's business
(:class:`~seekstack.gateway.limits.BodyLimitMiddleware`: 408 after ``body_timeout``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def bounded_protocol(header_timeout: float, max_connections: int) -> type[HttpToolsProtocol]:
    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.close()  # connection_lost forgets it
                return
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return BoundedHttpToolsProtocol
