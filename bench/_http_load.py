"""Closed-loop HTTP/1.1 load over keep-alive connections, lean enough not to be the bottleneck.

Each of C connections sends a request, reads the whole response, records the latency, and
repeats, for a fixed count. Responses must carry Content-Length (non-streamed JSON)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time

import httptools


class _Conn(asyncio.Protocol):
    def __init__(self):
        self.done: asyncio.Future | None = None
        self.status = 0
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_complete(self):
        self.status = self.parser.get_status_code()
        if self.done is not None and not self.done.done():
            self.done.set_result(self.status)

    def connection_lost(self, exc):
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("closed"))


async def run(host: str, port: int, request: bytes, concurrency: int, total: int) -> dict:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = total

    async def worker():
        nonlocal remaining
        _, conn = await loop.create_connection(_Conn, host, port)
        while remaining > 0:
            remaining -= 1
            conn.done = loop.create_future()
            t0 = time.perf_counter()
            conn.transport.write(request)
            status = await conn.done
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
        conn.transport.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    latencies.sort()
    pick = lambda q: latencies[min(int(q * len(latencies)), len(latencies) - 1)] * 1000
    return {"rps": len(latencies) / wall, "p50_ms": pick(0.5), "p99_ms": pick(0.99), "statuses": statuses}


def chat_request(host_port: str, key: str | None, path: str = "/v1/chat/completions", model: str = "stub") -> bytes:
    body = ('{"model":"%s","messages":[{"role":"user","content":"Hello, my phone is 13812345678. '
            'What is the answer?"}],"max_tokens":16}' % model).encode()
    auth = f"Authorization: Bearer {key}\r\n".encode() if key else b""
    return (f"POST {path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + auth + b"\r\n" + body


async def open_loop(host: str, port: int, request: bytes, rate: float, seconds: float, pool: int = 64,
                    seed: int = 7) -> dict:
    """Requests at Poisson arrivals of ``rate`` per second for ``seconds``, whether or not earlier
    ones have finished. Each latency counts from the moment the request was due, so time spent
    waiting for a free connection counts too (no coordinated omission). ``pool`` keep-alive
    connections are opened first. The client's garbage collector is off meanwhile: its pauses
    (tens of ms once thousands of requests are in its heap) would hold back arrivals and count
    as the server's latency."""
    import random

    loop = asyncio.get_running_loop()
    idle: asyncio.Queue = asyncio.Queue()
    conns = []
    for _ in range(pool):
        _, conn = await loop.create_connection(_Conn, host, port)
        conns.append(conn)
        idle.put_nowait(conn)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(due: float) -> None:
        conn = await idle.get()
        conn.done = loop.create_future()
        conn.transport.write(request)
        status = await conn.done
        latencies.append(time.perf_counter() - due)
        statuses[status] = statuses.get(status, 0) + 1
        idle.put_nowait(conn)

    rng = random.Random(seed)
    with collector_paused():
        start = time.perf_counter()
        due, pending = start, set()
        while due - start < seconds:
            due += rng.expovariate(rate)
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    for conn in conns:
        conn.transport.close()
    latencies.sort()
    pick = lambda q: latencies[min(int(q * len(latencies)), len(latencies) - 1)] * 1000
    return {"sent": len(latencies), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "statuses": statuses}


@contextlib.contextmanager
def collector_paused():
    """No garbage collection in this process meanwhile (what is there now is frozen, never scanned)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
