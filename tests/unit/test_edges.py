"""The gateway's edges: a bug is a 500 that closes the connection; log lines cannot be forged."""

from __future__ import annotations

import asyncio
import logging

import httpx

from seekstack.gateway import openai_routes
from seekstack.observability.logs import TEXT_FORMAT, TextFormatter


def test_an_unexpected_error_is_a_500_that_closes_the_connection(monkeypatch, caplog):
    async def broken(request):
        raise KeyError("a bug")

    async def fallback(scope, receive, send):  # every other route: not reached here
        raise AssertionError("not reached")

    monkeypatch.setitem(openai_routes.ENDPOINTS, ("POST", "/v1/chat/completions"), broken)
    app = openai_routes.OpenAIRoutes(fallback)

    async def call():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            return await c.post("/v1/chat/completions", json={})

    r = asyncio.run(call())
    assert r.status_code == 500 and r.headers["connection"] == "close"
    assert r.json()["error"]["code"] == "internal_error" and "a bug" not in r.text
    assert "unexpected error on POST /v1/chat/completions" in caplog.text


def test_text_log_lines_cannot_be_forged():
    record = logging.LogRecord("seekstack.gateway", logging.WARNING, __file__, 1,
                               "refused %s", ("x\n2026-11-29 INFO seekstack.audit: all fine\r\x1b[2K",), None)
    line = TextFormatter(TEXT_FORMAT).format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "x\\x0a2026-11-29 INFO seekstack.audit: all fine\\x0d\\x1b[2K" in line
