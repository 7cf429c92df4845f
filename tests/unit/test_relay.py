"""The stream relay (gateway/inference.py, gateway/upstream.py) against a scripted loopback engine."""

from __future__ import annotations

import asyncio
import sys

from seekstack.config import ModelConfig, SchedulerConfig
from seekstack.engines.backend import EngineReply
from seekstack.engines.http import EngineHTTP
from seekstack.engines.llamacpp import LlamaCppBackend
from seekstack.gateway.inference import relay
from seekstack.gateway.shaping import StreamShaper
from seekstack.gateway.upstream import Lease
from seekstack.governance.meter import Meter
from seekstack.registry import Registry
from seekstack.supervisor import Replica
from seekstack.traffic.router import Router

from test_engine_http import Peer, read_request


def test_a_stream_closed_early_leaves_no_generator_for_the_loop_to_close(tmp_path):
    """Each nested generator is closed in turn, not left for the event loop's finalizer (a task per generator)."""

    async def engine(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(3):
            event = b'data: {"choices":[{"index":0,"delta":{"content":"t%d"}}],"model":"e"}\n\n' % i
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        await asyncio.sleep(5)  # the rest never comes: the client leaves first

    async def main():
        left_for_the_loop = []
        hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=hooks.firstiter,
                               finalizer=lambda agen: (left_for_the_loop.append(agen), hooks.finalizer(agen)))
        async with Peer(tmp_path / "e.sock", engine) as url:
            http = EngineHTTP(read_timeout=5)
            response = await http.request(url, "POST", "/v1/chat/completions", b"{}", headers={"connection": "close"})
            model = ModelConfig(name="m", source="embedded")
            backend = LlamaCppBackend(http, url, model)
            lease = Lease(Replica(model, 0, None, backend, outstanding=1), EngineReply(response),
                          Router(Registry([]), SchedulerConfig()))
            stream = relay(lease, StreamShaper("m", include_usage=False, split_reasoning=False), Meter())
            first = await stream.__anext__()
            await stream.aclose()  # the client went away after the first token
            await asyncio.sleep(0)
            await http.close()
        return first, lease.replica.outstanding, left_for_the_loop

    first, outstanding, left_for_the_loop = asyncio.run(main())
    assert b'"content":"t0"' in first and b'"model":"m"' in first
    assert outstanding == 0  # the replica is released
    assert left_for_the_loop == []
