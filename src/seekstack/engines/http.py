"""HTTP/1.1 to engines, lean: asyncio transports + httptools, nothing between the bytes and us.

Base URLs are ``unix:///path.sock`` (the default: engines listen in a private 0700 directory,
so no local user can reach one around the gateway's controls), ``http://127.0.0.1:PORT``, or
``https://host[:port]`` for a remote engine: its certificate is verified against the system's
CAs, or against a private CA's (``engine.ca_file``), and the gateway may present a client
certificate of its own (``engine.cert_file``: mutual TLS) — :meth:`EngineHTTP.trust`. A TLS
context is made once per CA bundle, not per connection: making one reads the whole bundle
(~19 ms of CPU here), and connections are opened often: for every stream to llama.cpp,
after every idle gap, for every request beyond the pool.

Why not a general client: this is the hot path of every token. A general client costs
~1 ms of CPU per request here (measured in bench/README.md); one write per request, one
parser callback per body chunk, and a small keep-alive pool cost a third of that.

- :meth:`EngineHTTP.request` sends one request and returns once the response head is in.
- :class:`EngineResponse` gives the body whole (:meth:`read`) or piece by piece
  (:meth:`iter_chunks`), with back-pressure: reading pauses while the consumer lags.
- Connections are reused when both sides said keep-alive and go stale after
  :data:`KEEPALIVE_S` seconds idle (before llama.cpp's own 5 s timeout). Streamed
  requests should send ``Connection: close``: llama.cpp drops the connection after a
  stream even though its headers say keep-alive.
- A connection that does not go back to the pool (every stream's) is replaced in the
  background once its response is done, so the next stream finds one open and does not
  wait for a connect (and the engine's accept) before its first byte. Replacing it then,
  rather than when the request starts, keeps the connect out of the engine's busiest moment.
- Failures are :class:`EngineConnectionError` (nothing was answered: safe to retry) or
  :class:`EngineStreamError` (the connection broke mid-response).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ssl
import time
from typing import AsyncIterator

import httptools

from ..errors import ConfigError

UNIX = "unix://"
KEEPALIVE_S = 4.0
CONNECT_TIMEOUT_S = 5.0
HIGH_WATER = 256 * 1024   # pause reading from the engine above this many unconsumed bytes
LOW_WATER = 64 * 1024


class EngineConnectionError(ConnectionError):
    """The engine could not be reached, or closed before answering (no response byte)."""


class EngineStreamError(ConnectionError):
    """The connection broke after the response had started."""


class _Protocol(asyncio.Protocol):
    """One connection; at most one request in flight on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._response: EngineResponse | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._response is None:  # unsolicited bytes: the connection is unusable
            self.close()
            return
        try:
            self._response._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._response._fail(EngineStreamError(f"bad HTTP from the engine: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._response is not None:
            self._response._connection_lost(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class EngineResponse:
    """The answer to one request; the head is in when :meth:`EngineHTTP.request` returns."""

    def __init__(self, http: "EngineHTTP", key: str, proto: _Protocol, reusable: bool = True):
        self.status = 0
        self._reusable = reusable  # False when we asked for `Connection: close`
        self.headers: dict[str, str] = {}
        self._http, self._key, self._proto = http, key, proto
        self._parser = httptools.HttpResponseParser(self)
        self._head: asyncio.Future = asyncio.get_running_loop().create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future | None = None
        self._complete = False
        self._error: Exception | None = None
        self._paused = False
        self._released = False
        self._keep_alive = False

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._proto.transport is not None:
            self._paused = True
            self._proto.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._complete = True
        self._keep_alive = self._reusable and self._parser.should_keep_alive()  # only valid inside this callback
        self._wake()

    # connection events
    def _connection_lost(self, exc: Exception | None = None) -> None:
        if not self._complete:
            if not self._head.done():
                self._fail(_tls_refused(exc) if isinstance(exc, ssl.SSLError) else
                           EngineConnectionError("the engine closed the connection before answering"))
            else:
                try:  # a body delimited by the connection's end is complete now
                    self._parser.feed_data(b"")
                except httptools.HttpParserError:
                    pass
                if not self._complete:
                    self._fail(EngineStreamError("the engine connection broke mid-response"))
        self._wake()

    def _fail(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        if not self._head.done():
            self._head.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # consumer side
    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body pieces as they arrive (chunked framing removed)."""
        while True:
            if self._chunks:
                piece = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._drain())
                self._buffered -= len(piece)
                if self._paused and self._buffered < LOW_WATER and self._proto.transport is not None:
                    self._paused = False
                    self._proto.transport.resume_reading()
                yield piece
                continue
            if self._complete:
                self._release()
                return
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None

    def _drain(self) -> list[bytes]:
        pieces = list(self._chunks)
        self._chunks.clear()
        return pieces

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.iter_chunks()])

    def abort(self, reason: str) -> None:
        """Break the response off from outside (its engine was ejected): the reader gets
        ``EngineStreamError`` at once, and the connection is closed."""
        if not self._complete and not self._released:
            self._fail(EngineStreamError(reason))
            self._proto.close()

    def close(self) -> None:
        """Abandon the response (closes the connection unless it finished cleanly)."""
        if not self._released:
            if self._complete:
                self._release()
            else:
                self._released = True
                self._proto._response = None
                self._discard()

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        self._proto._response = None
        if self._keep_alive and not self._proto.closed and not self._paused:
            self._http._put_back(self._key, self._proto)
        else:
            self._discard()

    def _discard(self) -> None:
        """Close the connection; a spare replaces it in the background."""
        self._proto.close()
        self._http._refill(self._key)


@functools.lru_cache(maxsize=None)
def tls_context(ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None) -> ssl.SSLContext:
    """The context for engines' TLS: their certificates verified against the system's CAs, or only
    against those in ``ca_file``; with ``cert_file``, this client's certificate (mutual TLS).
    Made once per combination."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"engine.ca_file: cannot load CA certificates from {ca_file} ({_why(exc)})",
                          fix="point it at the PEM file of the CA that signed the engines' certificates") from None
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"engine.cert_file: cannot load the client certificate {cert_file} and its key "
                              f"({_why(exc)})", fix="point cert_file (and key_file) at PEM files of a certificate "
                                                     "and its private key") from None
    return context


def _tls_refused(exc: ssl.SSLError) -> EngineConnectionError:
    """TLS failed after the certificate checks (under TLS 1.3, a refused client certificate
    arrives once the handshake seemed done): nothing was answered, so safe to retry elsewhere."""
    return EngineConnectionError(f"TLS with the engine failed ({exc.reason or exc}): if it asks for a client "
                                 "certificate, set engine.cert_file (and key_file)")


def _why(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


class EngineHTTP:
    """Requests to engines by base URL, with a keep-alive pool per engine."""

    def __init__(self, *, read_timeout: float):
        self.read_timeout = read_timeout
        self._idle: dict[str, list[_Protocol]] = {}
        self._refills: dict[str, asyncio.Task] = {}
        self._tls: dict[str, ssl.SSLContext] = {}  # base URL -> its TLS context (CAs to verify it, our certificate)
        self._closed = False

    def trust(self, base_url: str, context: ssl.SSLContext | None) -> None:
        """Talk TLS to the engine at ``base_url`` (https) with ``context`` (None: the system's CAs,
        no client certificate). Contexts come from :func:`tls_context`: one per combination."""
        if base_url.startswith("https://"):
            self._tls[base_url] = context or tls_context()

    async def request(self, base_url: str, method: str, path: str, body: bytes = b"", *,
                      headers: dict[str, str] | None = None, timeout: float | None = None) -> EngineResponse:
        """Send; return when the response head has arrived (within ``timeout``, default read_timeout)."""
        proto = self._take(base_url)
        if proto is not None:
            try:
                return await self._send(base_url, proto, method, path, body, headers, timeout)
            except EngineConnectionError:
                pass  # the engine closed the idle connection as we reused it: nothing ran; go again fresh
        return await self._send(base_url, await self._connect(base_url), method, path, body, headers, timeout)

    async def _send(self, base_url: str, proto: _Protocol, method: str, path: str, body: bytes,
                    headers: dict[str, str] | None, timeout: float | None) -> EngineResponse:
        response = EngineResponse(self, base_url, proto, reusable=(headers or {}).get("connection") != "close")
        proto._response = response
        host = "engine" if base_url.startswith(UNIX) else base_url.partition("://")[2].partition("/")[0]
        head = [f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n".encode()]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}\r\n".encode())
        head.append(b"\r\n")
        assert proto.transport is not None
        proto.transport.write(b"".join(head) + body)
        try:
            async with asyncio.timeout(timeout if timeout is not None else self.read_timeout):
                await response._head
        except BaseException:
            response.close()
            raise
        return response

    async def get(self, base_url: str, path: str, *, timeout: float | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        response = await self.request(base_url, "GET", path, timeout=timeout, headers=headers)
        try:
            async with asyncio.timeout(timeout if timeout is not None else self.read_timeout):
                return response.status, await response.read()
        finally:
            response.close()

    async def _connect(self, base_url: str) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                if base_url.startswith(UNIX):
                    _, proto = await loop.create_unix_connection(_Protocol, base_url[len(UNIX):])
                else:
                    scheme, _, hostport = base_url.partition("://")
                    host, _, port = hostport.partition("/")[0].rpartition(":") if ":" in hostport else (hostport, "", "")
                    tls = (self._tls.get(base_url) or tls_context()) if scheme == "https" else None
                    _, proto = await loop.create_connection(_Protocol, host, int(port or (443 if tls else 80)),
                                                            ssl=tls, server_hostname=host if tls else None)
        except ssl.SSLCertVerificationError as exc:
            raise EngineConnectionError(f"the engine's TLS certificate is not trusted ({exc.verify_message}): set "
                                        "engine.ca_file to the CA that signed it") from None
        except ssl.SSLError as exc:
            raise _tls_refused(exc) from None
        except (OSError, TimeoutError) as exc:
            raise EngineConnectionError(f"cannot connect to the engine ({type(exc).__name__})") from None
        return proto

    def _take(self, key: str) -> _Protocol | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            proto = idle.pop()
            if not proto.closed and now - proto.idle_since < KEEPALIVE_S:
                return proto
            proto.close()
        return None

    def _put_back(self, key: str, proto: _Protocol) -> None:
        proto.idle_since = time.monotonic()
        self._idle.setdefault(key, []).append(proto)

    def _refill(self, key: str) -> None:
        """Open one connection to ``key`` in the background for the next request (one at a time)."""
        if self._closed or key in self._refills or self._idle.get(key):
            return

        async def connect() -> None:
            try:
                self._put_back(key, await self._connect(key))
            except EngineConnectionError:
                pass  # the engine is down: the next request finds out (and the supervisor already has)
            finally:
                self._refills.pop(key, None)

        self._refills[key] = asyncio.get_running_loop().create_task(connect())

    async def close(self) -> None:
        self._closed = True
        for task in list(self._refills.values()):
            task.cancel()
        self._refills.clear()
        for idle in self._idle.values():
            for proto in idle:
                proto.close()
        self._idle.clear()
