"""The simulator's HTTP/1.1 connections: httptools parsing, requests answered in order, and the
writes a fault needs to be real (a chunked stream that breaks, a reset, a socket that never answers)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import httptools
import orjson

if TYPE_CHECKING:
    from .server import SimServer

log = logging.getLogger("seekstack.sim")

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 500: "Internal Server Error"}


class Reset(Exception):
    """Abort the connection (a fault)."""


class Request:
    def __init__(self) -> None:
        self.method = ""
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.keep_alive = True

    @property
    def path(self) -> str:
        return self.url.split(b"?", 1)[0].decode("latin-1")


class Connection(asyncio.Protocol):
    def __init__(self, server: "SimServer"):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.current: Request | None = None
        self.queue: asyncio.Queue[Request] = asyncio.Queue()
        self.worker: asyncio.Task | None = None

    # protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.worker is not None:
            self.worker.cancel()

    # parser callbacks
    def on_message_begin(self) -> None:
        self.current = Request()

    def on_url(self, url: bytes) -> None:
        self.current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.current.body += body

    def on_message_complete(self) -> None:
        request = self.current
        request.method = self.parser.get_method().decode()
        request.keep_alive = self.parser.should_keep_alive()
        self.queue.put_nowait(request)

    # serving
    async def _serve(self) -> None:
        while True:
            request = await self.queue.get()
            try:
                keep = await self.server.handle(request, self)
            except Reset:
                self.abort()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — the simulator answers its own bugs with a 500
                log.exception("sim: request failed")
                self.respond(500, {"error": {"message": f"simulator error: {exc}"}})
                keep = True
            if not (keep and request.keep_alive):
                self.close()
                return

    def respond(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        self.write(f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\ncontent-type: {content_type}\r\n"
                   f"content-length: {len(data)}\r\n\r\n".encode() + data)

    def start_stream(self, close: bool) -> None:
        self.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                   + (b"connection: close\r\n" if close else b"") + b"transfer-encoding: chunked\r\n\r\n")

    def chunk(self, data: bytes) -> None:
        self.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self) -> None:
        self.write(b"0\r\n\r\n")

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
