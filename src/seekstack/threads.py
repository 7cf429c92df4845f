"""Work the event loop must not wait for: a database call, a render, a hash — run in a worker
thread; a long walk in Python — run in a process of its own, where it holds no interpreter lock
the event loop needs."""

from __future__ import annotations

import asyncio
import functools
import sys

import anyio


async def off_loop(call, *args, **kwargs):
    """``call(*args, **kwargs)`` in a worker thread; the loop goes on serving meanwhile."""
    return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))


async def in_process(module: str, *args: str) -> tuple[int, bytes]:
    """``python -m module args…`` in a process of its own: its exit status and what it printed.
    Cancelled (the caller left), it is killed."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, *args, stdout=asyncio.subprocess.PIPE,
                                                stdin=asyncio.subprocess.DEVNULL)
    try:
        output, _ = await proc.communicate()
    except asyncio.CancelledError:
        proc.kill()
        raise
    return proc.returncode, output
