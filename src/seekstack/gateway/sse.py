"""A lean streaming response for server-sent events.

Like Starlette's StreamingResponse, minus its per-request task group: one watcher task
waits for the client to go away and cancels the relay; the final event goes out together
with the end of the response (one write instead of two)."""

from __future__ import annotations

from typing import AsyncIterator

from starlette.responses import Response

from .disconnect import ClientGone, cancel_on_disconnect

HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
           (b"x-accel-buffering", b"no")]
LAST = b"data: [DONE]\n\n"


class EventStream(Response):
    def __init__(self, events: AsyncIterator[bytes]):
        self.events = events
        self.status_code = 200
        self.background = None
        self.raw_headers = list(HEADERS)

    async def __call__(self, scope, receive, send) -> None:
        try:
            async with cancel_on_disconnect(receive):
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                ended = False
                async for event in self.events:
                    ended = event.endswith(LAST)
                    await send({"type": "http.response.body", "body": event, "more_body": not ended})
                    if ended:
                        break
                if not ended:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        except ClientGone:
            pass  # the client left: not an error
        finally:
            await self.events.aclose()  # closes the engine connection: the engine stops work
