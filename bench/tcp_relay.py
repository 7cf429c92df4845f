"""The thinnest possible hop: a TCP relay (uvloop, protocols, no HTTP parsing) in front of a port.

    python bench/tcp_relay.py PORT UPSTREAM_PORT

Each client connection gets one upstream connection, and bytes are copied both ways as they
come. What it adds to a request is what any extra process in the path costs on this machine
(wake-ups, copies, scheduling), none of a gateway's work: bench/open_loop.py uses it as the
floor."""

from __future__ import annotations

import asyncio
import sys

import uvloop


class _Pipe(asyncio.Protocol):
    def __init__(self, peer: "_Pipe | None" = None):
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport):
        self.transport = transport
        for data in self.pending:
            transport.write(data)
        self.pending.clear()

    def data_received(self, data):
        if self.peer.transport is None:
            self.peer.pending.append(data)
        else:
            self.peer.transport.write(data)

    def connection_lost(self, exc):
        if self.peer and self.peer.transport:
            self.peer.transport.close()


def main(port: int, upstream: int) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()

        def client() -> _Pipe:
            down = _Pipe()
            up = _Pipe(down)
            down.peer = up
            loop.create_task(loop.create_connection(lambda: up, "127.0.0.1", upstream))
            return down

        server = await loop.create_server(client, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
