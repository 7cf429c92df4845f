"""The engine HTTP client against a scripted loopback HTTP server (the outermost edge).

llama.cpp does not misbehave on demand; these scripted peers do: close an idle kept-alive
connection, break mid-body, refuse, answer slowly, stream more than a slow reader takes.
"""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest

from seekstack.engines.http import HIGH_WATER, EngineConnectionError, EngineHTTP, EngineStreamError, tls_context


class Peer:
    """A Unix-socket HTTP server whose handler is a coroutine(reader, writer) per connection."""

    def __init__(self, path, handler):
        self.path, self.handler, self.connections = str(path), handler, 0

    async def __aenter__(self):
        async def on_connect(reader, writer):
            self.connections += 1
            try:
                await self.handler(reader, writer)
            finally:
                writer.close()

        self.server = await asyncio.start_unix_server(on_connect, self.path)
        return f"unix://{self.path}"

    async def __aexit__(self, *exc):
        self.server.close()


async def read_request(reader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    return await reader.readexactly(length)


def run(coro):
    return asyncio.run(coro)


def test_keep_alive_reuses_one_connection(tmp_path):
    async def handler(reader, writer):
        while True:
            try:
                body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async def main():
        peer = Peer(tmp_path / "a.sock", handler)
        async with peer as url:
            http = EngineHTTP(read_timeout=5)
            for i in range(3):
                r = await http.request(url, "POST", "/echo", b"n%d" % i)
                assert (r.status, await r.read()) == (200, b"n%d" % i)
            await http.close()
        return peer.connections

    assert run(main()) == 1


def test_chunked_stream_arrives_piece_by_piece(tmp_path):
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n")
        for i in range(3):
            data = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")

    async def main():
        async with Peer(tmp_path / "b.sock", handler) as url:
            http = EngineHTTP(read_timeout=5)
            r = await http.request(url, "POST", "/s", b"{}", headers={"connection": "close"})
            assert r.headers["content-type"] == "text/event-stream"
            pieces = [p async for p in r.iter_chunks()]
            await http.close()
            return pieces

    assert run(main()) == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]


def test_idle_connection_closed_by_engine_is_replaced_transparently(tmp_path):
    async def handler(reader, writer):  # answers one request, then hangs up despite keep-alive
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def main():
        peer = Peer(tmp_path / "c.sock", handler)
        async with peer as url:
            http = EngineHTTP(read_timeout=5)
            first = await http.request(url, "GET", "/")
            assert await first.read() == b"ok"
            await asyncio.sleep(0.05)  # the close reaches us... or not yet: either way the retry covers it
            second = await http.request(url, "GET", "/")
            assert await second.read() == b"ok"
            await http.close()
        return peer.connections

    assert run(main()) == 2


def test_a_connection_close_request_leaves_an_open_connection_for_the_next(tmp_path):
    """Like llama.cpp after a stream: the peer hangs up after each answer. From the second
    request on, each finds a connection already open (accepted long before its bytes came)."""
    waited: list[float] = []  # per request: how long its connection was open before the request arrived

    async def handler(reader, writer):
        accepted = time.monotonic()
        try:
            await read_request(reader)
        except asyncio.IncompleteReadError:
            return  # a spare closed unused
        waited.append(time.monotonic() - accepted)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async def main():
        peer = Peer(tmp_path / "s.sock", handler)
        async with peer as url:
            http = EngineHTTP(read_timeout=5)
            for _ in range(3):
                r = await http.request(url, "POST", "/stream", b"{}", headers={"connection": "close"})
                assert await r.read() == b"ok"
                r.close()
                await asyncio.sleep(0.1)
            await http.close()
        return peer.connections

    assert run(main()) == 4  # three answered, one spare left open at the end
    assert waited[0] < 0.05 and all(w >= 0.05 for w in waited[1:]), waited


def test_refused_connection_is_a_connection_error(tmp_path):
    async def main():
        await EngineHTTP(read_timeout=5).request(f"unix://{tmp_path}/nobody.sock", "GET", "/")

    with pytest.raises(EngineConnectionError):
        run(main())


def test_close_before_answer_is_retryable_and_mid_body_is_not(tmp_path):
    async def silent(reader, writer):
        await read_request(reader)

    async def half(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async def main():
        async with Peer(tmp_path / "d.sock", silent) as url:
            with pytest.raises(EngineConnectionError):
                await EngineHTTP(read_timeout=5).request(url, "POST", "/", b"{}")
        async with Peer(tmp_path / "e.sock", half) as url:
            r = await EngineHTTP(read_timeout=5).request(url, "POST", "/", b"{}")
            with pytest.raises(EngineStreamError):
                await r.read()

    run(main())


def test_head_timeout(tmp_path):
    async def slow(reader, writer):
        await read_request(reader)
        await asyncio.sleep(5)

    async def main():
        async with Peer(tmp_path / "f.sock", slow) as url:
            await EngineHTTP(read_timeout=0.2).request(url, "POST", "/", b"{}")

    with pytest.raises(TimeoutError):
        run(main())


def test_slow_reader_pauses_the_engine_and_loses_nothing(tmp_path):
    total = 4 * HIGH_WATER
    sent = []

    async def firehose(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % total)
        block = b"x" * 16384
        for _ in range(total // len(block)):
            writer.write(block)
            await writer.drain()  # blocks while the client has paused reading
            sent.append(len(block))

    async def main():
        async with Peer(tmp_path / "g.sock", firehose) as url:
            r = await EngineHTTP(read_timeout=5).request(url, "GET", "/")
            await asyncio.sleep(0.5)  # not reading: the engine must be held back
            held_back = sum(sent)
            body = await r.read()
            return held_back, len(body)

    held_back, received = run(main())
    assert received == total
    assert held_back < total  # back-pressure reached the sender


def test_tls_to_an_engine_makes_one_context_per_ca_not_one_per_connection(tmp_path, monkeypatch):
    """Connections are opened often (every stream to llama.cpp); making a TLS context reads the
    whole CA bundle (~19 ms of CPU, on the event loop), so one is made per CA file and shared."""
    from pki import private_ca

    pki = private_ca(tmp_path)
    ca, pem = pki["ca"], pki["engine"]
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(pem)
    made, real = [], ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: made.append(k) or real(*a, **k))
    tls_context.cache_clear()
    connections = []

    async def on_connect(reader, writer):
        connections.append(writer)
        try:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client's spare connection, closed unused or still open at the end
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=serving)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        http = EngineHTTP(read_timeout=5)
        http.trust(url, tls_context(str(ca)))
        for _ in range(5):
            r = await http.request(url, "POST", "/v1/chat/completions", b"{}", headers={"connection": "close"})
            assert (r.status, await r.read()) == (200, b"ok")
        await http.close()
        server.close()

    run(main())
    assert len(connections) >= 5 and made == [{"cafile": str(ca)}]
