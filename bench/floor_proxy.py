"""The thinnest proxies in front of a llama.cpp server: what any Python proxy costs on this machine.

    python bench/floor_proxy.py streams ENGINE_PORT PORT   # uvloop + asyncio streams, bytes relayed as they come
    python bench/floor_proxy.py uvicorn ENGINE_PORT PORT   # a bare ASGI app on uvicorn (uvloop/httptools), as the gateway runs
    python bench/floor_proxy.py controls ENGINE_PORT PORT STATE_DIR  # that app + seekstack's key check and audit commit
    python bench/floor_proxy.py json ENGINE_PORT PORT [STATE_DIR]    # non-streamed JSON over kept-alive engine connections

Each request gets its own engine connection; nothing is parsed beyond the HTTP framing or
logged. `controls` adds only the two checks that must finish before an engine sees a request
(the key, and the fail-closed audit record committed), with seekstack's own code, so it is
the least the default controls can cost on top of the server; it writes the bootstrap key
to STATE_DIR/admin.key. bench/floors.py measures them beside the gateway.

`json` is the same bare app for a non-streamed JSON upstream (bench/stub_openai.py), reusing
engine connections as the gateway does; with STATE_DIR it adds the same two controls.
bench/open_loop.py measures it at half its own capacity, beside the gateway at half its.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import uvloop


async def _engine(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def streams(engine_port: int, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # a connection that sent nothing (the readiness check)
            writer.close()
            return
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
        engine_reader, engine_writer = await _engine(engine_port)
        engine_writer.write(head + body)
        while chunk := await engine_reader.read(65536):  # the engine's response, verbatim
            writer.write(chunk)
        writer.close()
        engine_writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def uvicorn_app(engine_port: int, port: int, state_dir: str | None = None) -> None:
    import uvicorn

    check = _controls(state_dir) if state_dir else None

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if check is not None:
            await check(scope)
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        engine_reader, engine_writer = await _engine(engine_port)
        engine_writer.write(b"POST %s HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
                            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % (scope["path"].encode(), len(body)) + body)
        await engine_reader.readuntil(b"\r\n\r\n")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        while size := int((await engine_reader.readuntil(b"\r\n")).split(b";")[0], 16):  # chunked, as llama.cpp sends
            chunk = await engine_reader.readexactly(size + 2)
            await send({"type": "http.response.body", "body": chunk[:-2], "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        engine_writer.close()

    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="none", http="httptools", lifespan="off",
                            access_log=False, log_level="warning")
    uvloop.run(uvicorn.Server(config).serve())


def json_app(engine_port: int, port: int, state_dir: str | None = None) -> None:
    import uvicorn

    check = _controls(state_dir) if state_dir else None
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":  # the readiness check
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        if check is not None:
            await check(scope)
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        engine_reader, engine_writer = idle.pop() if idle else await _engine(engine_port)
        engine_writer.write(b"POST %s HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % (scope["path"].encode(), len(body)) + body)
        head = await engine_reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        payload = await engine_reader.readexactly(length)
        idle.append((engine_reader, engine_writer))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})

    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="none", http="httptools", lifespan="off",
                            access_log=False, log_level="warning")
    uvloop.run(uvicorn.Server(config).serve())


def _controls(state_dir: str):
    """seekstack's key check and fail-closed audit append, as the guard runs them (nothing else)."""
    from seekstack.config import Settings
    from seekstack.governance import Governance

    governance = Governance(Settings(state_dir=state_dir))
    governance.bootstrap()

    def fold_wal() -> None:  # as the gateway does: the audit WAL folded into the database every second, off the loop
        while True:
            time.sleep(1.0)
            governance.audit.checkpoint_wal()

    threading.Thread(target=fold_wal, daemon=True).start()

    async def check(scope) -> None:  # requests come one at a time here: each commits alone, as in the guard
        governance.refresh_if_changed()
        authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        principal = governance.auth.authenticate(authorization)  # raises on a bad key: the request fails
        await governance.audit.append({"event": "request", "key_id": principal.key_id, "endpoint": scope["path"],
                                       "decision": "allow"}, alone=True)

    return check


if __name__ == "__main__":
    kind, engine_port, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if kind == "controls":
        uvicorn_app(engine_port, port, sys.argv[4])
    elif kind == "json":
        json_app(engine_port, port, sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        {"streams": streams, "uvicorn": uvicorn_app}[kind](engine_port, port)
