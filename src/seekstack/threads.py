"""Work the event loop must not wait for: a database call, a render, a hash — run in a worker thread."""

from __future__ import annotations

import functools

import anyio


async def off_loop(call, *args, **kwargs):
    """``call(*args, **kwargs)`` in a worker thread; the loop goes on serving meanwhile."""
    return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))
