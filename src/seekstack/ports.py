"""Whether a listening address is free, and who holds it when it is not."""

from __future__ import annotations

import errno
import socket

import psutil


def in_use(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound (as uvicorn binds it: SO_REUSEADDR)."""
    if port == 0:
        return False
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def holder(port: int) -> tuple[int, str] | None:
    """(PID, command line) of the process listening on ``port``, when this user may see it."""
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                try:
                    command = " ".join(psutil.Process(conn.pid).cmdline()[:4]) or psutil.Process(conn.pid).name()
                except psutil.Error:
                    command = "?"
                return conn.pid, command
    except (psutil.AccessDenied, PermissionError):
        return None
    return None


def describe_holder(port: int) -> str:
    found = holder(port)
    return f"PID {found[0]} ({found[1][:120]})" if found else "another process"
