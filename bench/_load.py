"""A small streaming load generator shared by the bench scripts (httpx, asyncio, fixed concurrency)."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import httpx
import orjson


@dataclass
class Result:
    ttft: list[float] = field(default_factory=list)      # seconds to first content token
    tokens: int = 0
    wall: float = 0.0
    errors: int = 0

    @property
    def throughput(self) -> float:
        return self.tokens / self.wall if self.wall else 0.0

    def p(self, q: float) -> float:
        data = sorted(self.ttft)
        return data[min(int(q * len(data)), len(data) - 1)] if data else float("nan")


async def one_stream(client: httpx.AsyncClient, url: str, body: dict, result: Result) -> None:
    t0 = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("POST", url, json=body) as r:
        if r.status_code != 200:
            await r.aread()
            result.errors += 1
            return
        buf = b""
        async for piece in r.aiter_raw():
            buf += piece
            while (end := buf.find(b"\n\n")) >= 0:
                event, buf = buf[:end], buf[end + 2:]
                if not event.startswith(b"data: ") or event == b"data: [DONE]":
                    continue
                chunk = orjson.loads(event[6:])
                for choice in chunk.get("choices", []):
                    if choice.get("delta", {}).get("content"):
                        tokens += 1
                        if first is None:
                            first = time.perf_counter() - t0
    if first is not None:
        result.ttft.append(first)
    result.tokens += tokens


def client_for(url: str, concurrency: int = 1, headers: dict | None = None) -> tuple[httpx.AsyncClient, str]:
    """A client and request URL; ``url`` may be ``unix:///path.sock/v1/...`` (an engine's Unix socket)."""
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=0)  # llama.cpp drops streamed conns
    transport = None
    if url.startswith("unix://"):
        sock, _, path = url[len("unix://"):].partition(".sock")
        transport = httpx.AsyncHTTPTransport(uds=sock + ".sock", limits=limits)
        url = "http://engine" + path
    return httpx.AsyncClient(timeout=120, limits=limits, transport=transport, headers=headers), url


async def run_load(url: str, body: dict, concurrency: int, requests: int, headers: dict | None = None) -> Result:
    result = Result()
    queue = list(range(requests))
    client, url = client_for(url, concurrency, headers)
    async with client:
        async def worker():
            while queue:
                queue.pop()
                await one_stream(client, url, body, result)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall = time.perf_counter() - t0
    return result


def median(values):
    return statistics.median(values)
