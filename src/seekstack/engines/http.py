"""HTTP to engines by base URL: ``http://host:port`` over pooled TCP, ``unix:///path.sock`` over a Unix socket.

Engines listen on Unix sockets in a private (0700) directory by default, so that no other
local user can reach an engine around the gateway's controls; TCP loopback is an option.
"""

from __future__ import annotations

import aiohttp

UNIX = "unix://"


class EngineHTTP:
    def __init__(self, *, read_timeout: float):
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=read_timeout)
        self._tcp: aiohttp.ClientSession | None = None
        self._unix: dict[str, aiohttp.ClientSession] = {}

    def _session(self, base_url: str) -> tuple[aiohttp.ClientSession, str]:
        if base_url.startswith(UNIX):
            path = base_url[len(UNIX):]
            session = self._unix.get(path)
            if session is None or session.closed:
                session = self._unix[path] = self._new(aiohttp.UnixConnector(path=path, limit=1024, keepalive_timeout=4.0))
            return session, "http://engine"
        if self._tcp is None or self._tcp.closed:
            # idle connections expire before llama.cpp's own 5 s keep-alive does
            self._tcp = self._new(aiohttp.TCPConnector(limit=2048, keepalive_timeout=4.0))
        return self._tcp, base_url

    def _new(self, connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=False, auto_decompress=False)

    def post(self, base_url: str, path: str, **kwargs):
        session, prefix = self._session(base_url)
        return session.post(prefix + path, **kwargs)

    def get(self, base_url: str, path: str, **kwargs):
        session, prefix = self._session(base_url)
        return session.get(prefix + path, **kwargs)

    async def close(self) -> None:
        for session in [self._tcp, *self._unix.values()]:
            if session is not None:
                await session.close()
