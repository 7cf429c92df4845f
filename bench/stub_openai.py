"""A fast OpenAI-compatible stub upstream for gateway benchmarks (raw asyncio + httptools).

Answers POST /v1/chat/completions with a fixed completion (usage included), GET /health and
GET /v1/models, and POST /v1/traces (an OTLP sink); keep-alive. Usage: python bench/stub_openai.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

import httptools

COMPLETION = json.dumps({
    "id": "chatcmpl-stub", "object": "chat.completion", "created": 1700000000, "model": "stub",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "The answer is 42. Call 13812345678 for details."}}],
    "usage": {"prompt_tokens": 20, "completion_tokens": 12, "total_tokens": 32},
}).encode()
MODELS = json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]}).encode()


def response(body: bytes, status: bytes = b"200 OK") -> bytes:
    return b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: " + \
        str(len(body)).encode() + b"\r\n\r\n" + body


class Stub(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_url(self, url):
        self.url = url

    def on_message_complete(self):
        if self.url.startswith(b"/v1/chat/completions"):
            self.transport.write(response(COMPLETION))
        elif self.url.startswith(b"/v1/traces"):  # an OTLP/HTTP sink for tracing benchmarks
            self.transport.write(response(b"{}"))
        elif self.url.startswith(b"/health") or self.url.startswith(b"/v1/models"):
            self.transport.write(response(MODELS if b"models" in self.url else b'{"status":"ok"}'))
        else:
            self.transport.write(response(b'{"error":{"message":"not found"}}', b"404 Not Found"))
        if not self.parser.should_keep_alive():
            self.transport.close()


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Stub, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main(int(sys.argv[1])))
    except ImportError:
        asyncio.run(main(int(sys.argv[1])))
