"""The private channel between a `serve --workers` leader and its gateway workers.

One JSON line asks (``{"op": "reload"}``), one JSON line answers (``{"result": ...}`` or
``{"error": {"code", "message", "fix"}}``), over a Unix socket in the leader's private
runtime directory (0700; each socket 0600). A peer must also run as this process's user
(``SO_PEERCRED``): the channel carries no key, so the file system and the kernel are its
authentication. The leader listens for a worker that was asked to reload (the admin API,
SIGHUP); each worker listens for the leader telling it to apply its rewritten config and
saying when its old endpoints have drained.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson

from .errors import ConfigError, SeekstackError

LEADER_ENV = "SEEKSTACK_LEADER_SOCKET"    # a worker: where its leader listens
CONTROL_ENV = "SEEKSTACK_CONTROL_SOCKET"  # a worker: where it listens for its leader

Handler = Callable[[], Awaitable[Any]]


class Unreachable(SeekstackError):
    """Nothing answers on the socket (not started yet, or gone)."""

log = logging.getLogger("seekstack.control")


async def listen(path: Path, handlers: dict[str, Handler]) -> asyncio.AbstractServer:
    """Answer each connection's one request with ``handlers[op]()``; errors become answers."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not _same_user(writer.get_extra_info("socket")):
            writer.close()  # not a word to another user
            return
        try:
            op = orjson.loads(await reader.readline()).get("op")
            handler = handlers.get(op)
            if handler is None:
                raise SeekstackError(f"unknown control operation {op!r}")
            reply: dict[str, Any] = {"result": await handler()}
        except SeekstackError as exc:
            reply = {"error": {"code": exc.code, "message": exc.message, "fix": exc.fix}}
        except (orjson.JSONDecodeError, AttributeError):
            reply = {"error": {"code": None, "message": "a control request is one JSON object on one line", "fix": None}}
        except Exception:  # a bug: said in the log here, in a line to the asker
            log.exception("control operation failed")
            reply = {"error": {"code": None, "message": "the operation failed; see this process's log", "fix": None}}
        try:
            writer.write(orjson.dumps(reply) + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(answer, path)
    os.chmod(path, 0o600)
    return server


async def ask(path: Path, op: str, timeout: float) -> Any:
    """The answer of the process listening at ``path`` to ``op``; its error raised here, as it was there."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 5)
    except (OSError, asyncio.TimeoutError) as exc:
        raise Unreachable(f"the {path.stem} process does not answer on {path} ({exc})",
                             fix="see its log; the leader starts a worker again when it exits") from None
    try:
        writer.write(orjson.dumps({"op": op}) + b"\n")
        line = await asyncio.wait_for(reader.readline(), timeout)
    except asyncio.TimeoutError:
        raise SeekstackError(f"the {path.stem} process did not finish {op!r} within {timeout:.0f} s",
                             fix="see its log") from None
    except OSError:
        line = b""  # it closed the connection: said below
    finally:
        writer.close()
    try:
        reply = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise SeekstackError(f"the {path.stem} process closed the control connection without an answer",
                             fix="see its log") from None
    if "error" in reply:
        error = reply["error"]
        kind = ConfigError if error.get("code") == ConfigError.code else SeekstackError
        raise kind(error["message"], fix=error.get("fix"))
    return reply["result"]


def _same_user(sock: socket.socket | None) -> bool:
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return sock is not None
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()
