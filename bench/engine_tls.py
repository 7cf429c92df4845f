"""What opening a TLS connection to an engine costs the gateway's event loop, per stream.

Connections to engines are opened often (every stream to llama.cpp, which closes it after a
stream; any request after a 4 s idle gap; any beyond the pool). To an ``https://`` engine that is a TLS handshake, and it used to
be a new TLS context as well, which reads the whole CA bundle. Here, against a local TLS
server (certificate from a private CA, as ``engine.ca_file`` trusts), in one run:

- ``shared``: what the gateway does now: one context per CA bundle (``EngineHTTP.trust``),
  each request on a fresh connection;
- ``per connection``: a context made for every connection, as before, with the system's bundle
  loaded as ``ssl.create_default_context()`` did (the private CA added, so the handshake verifies).

CPU time of this process per request (client and server share it; the server's part is the
same in both), and the ratio. Target: shared ≤ 0.5 × per connection.

Usage: python bench/engine_tls.py [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pki import private_ca  # noqa: E402

from seekstack.engines import http as engine_http  # noqa: E402


async def measure(requests: int, per_connection: bool, ca: Path, pem: Path) -> float:
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(pem)

    async def on_connect(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client's spare connection, closed unused or still open at the end
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=serving)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    http = engine_http.EngineHTTP(read_timeout=10)
    http.trust(url, engine_http.tls_context(str(ca)))
    if per_connection:  # as before: a context for every connection, the system bundle read each time
        def fresh() -> ssl.SSLContext:
            context = ssl.create_default_context()
            context.load_verify_locations(cafile=str(ca))
            return context

        http._tls = _Fresh(fresh)
    started = time.process_time()
    for _ in range(requests):
        response = await http.request(url, "POST", "/v1/chat/completions", b"{}", headers={"connection": "close"})
        await response.read()
    spent = time.process_time() - started
    await http.close()
    server.close()
    return spent / requests * 1000


class _Fresh(dict):
    """A base URL → context map that makes a new context at every look-up."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def get(self, key, default=None):
        return self.make()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    pki = private_ca(Path(tempfile.mkdtemp()))
    ca, pem = pki["ca"], pki["engine"]
    shared = asyncio.run(measure(args.requests, False, ca, pem))
    fresh = asyncio.run(measure(args.requests, True, ca, pem))
    ratio = shared / fresh
    print(f"CPU per request on a new TLS connection: shared context {shared:.2f} ms, "
          f"a context per connection {fresh:.2f} ms, ratio {ratio:.2f}")
    print(f"{'PASS' if ratio <= 0.5 else 'MISS'}  shared / per connection = {ratio:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
