"""Errors on console pages, for a person: not signed in → the sign-in page; anything else → a
page in the person's language saying what went wrong and what to do. (The API's own routes
answer OpenAI error JSON; the console's writes are API calls and get it too.)"""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import HTMLResponse, Response

from ..errors import SeekstackError
from ..governance.policy import OPEN_PREFIXES
from .render import SECURITY_HEADERS, html, language

KNOWN = (400, 401, 403, 404, 409, 429, 500, 503)


def is_console_page(scope) -> bool:
    path = scope["path"]
    return scope["method"] == "GET" and (path == "/console" or path.startswith("/console/")) \
        and not path.startswith(OPEN_PREFIXES)


def console_error(scope, exc: SeekstackError, ids: list[tuple[bytes, bytes]] = ()) -> Response:
    """The page for ``exc``: not signed in → 303 to the sign-in page; else an error page."""
    headers = {**SECURITY_HEADERS, **{k.decode(): v.decode() for k, v in ids}}
    if exc.status == 401:
        target = "/console/signin?next=" + quote(scope["path"], safe="/")
        return Response(status_code=303, headers={**headers, "location": target})
    lang, _ = language(scope["headers"], scope.get("query_string", b""))
    status = exc.status if exc.status in KNOWN else 500
    body = html("error.html", lang, None, scope["path"], status=status, detail=exc.message, fix=exc.fix or "")
    return HTMLResponse(body, status_code=exc.status, headers={**headers, **exc.headers()})


async def send_console_error(scope, send, exc: SeekstackError, ids: list[tuple[bytes, bytes]]) -> None:
    await console_error(scope, exc, ids)(scope, _nothing, send)


async def _nothing():  # an error page reads no request body
    return {"type": "http.disconnect"}
