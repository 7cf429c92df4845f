"""Stop work for a client that has gone away: a watcher task cancels the task that serves it.

Used around streams (gateway/sse.py): closing the engine connection makes the engine drop the
request instead of finishing it for nobody."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager


class ClientGone(Exception):
    """The client disconnected; the work was cancelled."""


@asynccontextmanager
async def cancel_on_disconnect(receive):
    task = asyncio.current_task()
    gone = asyncio.Event()

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                task.cancel()
                return

    watcher = asyncio.create_task(watch())
    try:
        yield
    except asyncio.CancelledError:
        if gone.is_set():
            task.uncancel()
            raise ClientGone() from None
        raise
    finally:
        watcher.cancel()
