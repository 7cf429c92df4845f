"""The gateway edge: every error becomes OpenAI error JSON with the right status. Never a traceback."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..console.errors import console_error, is_console_page
from ..errors import InvalidRequestError, SeekstackError
from .disconnect import ClientGone

log = logging.getLogger("seekstack.gateway")


def error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": error_type, "param": param, "code": code}})


def error_response(exc: SeekstackError) -> Response:
    message = exc.message if not exc.fix else f"{exc.message}. {exc.fix}"
    return Response(
        error_body(message, exc.error_type, exc.code, exc.param),
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers(),
    )


async def send_error(send, exc: SeekstackError, extra_headers: list[tuple[bytes, bytes]] = ()) -> None:
    """The same error JSON, for the ASGI middlewares that answer before any route runs."""
    message = exc.message if not exc.fix else f"{exc.message}. {exc.fix}"
    body = error_body(message, exc.error_type, exc.code, exc.param)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra_headers]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers().items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def sse_error(exc: SeekstackError) -> bytes:
    """An error after the stream has started: one SSE event, as OpenAI does."""
    return b"data: " + error_body(exc.message, exc.error_type, exc.code) + b"\n\n"


def route_error(request: Request, exc: SeekstackError | ClientGone) -> Response:
    """A route's error as its response; the code goes in request.state, where the guard's metrics count it.
    A console page's error is a page (:mod:`seekstack.console.errors`), not JSON."""
    if isinstance(exc, ClientGone):
        request.state.error_code = "client_closed_request"
        return Response(status_code=499)  # nginx's "client closed request": for the logs and metrics only
    request.state.error_code = exc.code
    if is_console_page(request.scope):
        return console_error(request.scope, exc)
    return error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    # Each handler notes the error code in request.state: the guard's metrics count refusals by it.
    @app.exception_handler(SeekstackError)
    async def _seekstack(request: Request, exc: SeekstackError) -> Response:
        return route_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        request.state.error_code = "invalid_parameters"
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first["loc"] if p != "body") or None
        if is_console_page(request.scope):  # a page's query parameter: a page saying which, not JSON
            return console_error(request.scope, InvalidRequestError(f"{param}: {first['msg']}" if param
                                                                    else first["msg"], param=param))
        return Response(error_body(f"{param}: {first['msg']}" if param else first["msg"], "invalid_request_error",
                                   "invalid_parameters", param), status_code=422, media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        request.state.error_code = code
        return Response(error_body(str(exc.detail), "invalid_request_error", code), status_code=exc.status_code,
                        media_type="application/json", headers=getattr(exc, "headers", None))

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, exc: ClientGone) -> Response:
        return route_error(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        response = internal_error(request.method, request.url.path)  # logs the traceback
        if is_console_page(request.scope):  # a person is looking: a page, without the traceback either
            return console_error(request.scope, SeekstackError("internal error; the gateway log has the details"))
        return response


def internal_error(method: str, path: str) -> Response:
    """A 500: logged with its traceback, answered as OpenAI error JSON, and the connection closed —
    whatever broke may have left it in an unknown state, and the client must know not to reuse it."""
    log.exception("unexpected error on %s %s", method, path[:256])
    return Response(error_body("internal error; the gateway log has the details", "server_error", "internal_error"),
                    status_code=500, media_type="application/json", headers={"connection": "close"})
