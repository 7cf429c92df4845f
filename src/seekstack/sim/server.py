"""The simulator's HTTP server: raw asyncio + httptools, on TCP or a Unix socket, in any event loop.

Routes (each dialect has those its engine has): ``/health``, ``/metrics``, ``/v1/models``,
``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/rerank``, ``/tokenize`` (vLLM, llama.cpp),
``/apply-template`` (llama.cpp); and the simulator's own ``GET /sim/info`` (its config and the
command line it stands in for) and ``POST /sim/faults`` (set faults; the API key applies).

Raw asyncio rather than a framework, so that faults are real: a refused connection is a closed
listener, a broken stream is a reset connection, a hang is a socket that never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from .connection import Connection, Request, Reset
from .dialects import DIALECTS, Dialect
from .engine import Answer, Faults, SimEngine, now, render_chat, tokens_of

log = logging.getLogger("seekstack.sim")

_ids = itertools.count(1)


class SimServer:
    def __init__(self, engine: SimEngine, *, host: str = "127.0.0.1", port: int = 0, uds: Path | None = None):
        self.engine = engine
        self.dialect: Dialect = DIALECTS[engine.config.dialect]
        self.host, self.port, self.uds = host, port, uds
        self._server: asyncio.base_events.Server | None = None
        self._watch: asyncio.Task | None = None
        self.connections: set[Connection] = set()
        self._random = random.Random(engine.config.seed)

    # ------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"unix://{self.uds}" if self.uds else f"http://{self.host}:{self.port}"

    async def start(self) -> "SimServer":
        await self._listen()
        self._watch = asyncio.get_running_loop().create_task(self._watch_refusal())
        return self

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        if self.uds is not None:
            self.uds.unlink(missing_ok=True)
            self._server = await loop.create_unix_server(lambda: Connection(self), str(self.uds))
        else:
            self._server = await loop.create_server(lambda: Connection(self), self.host, self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _watch_refusal(self) -> None:
        """The ``refuse`` fault closes the listener; clearing it listens again on the same address."""
        while True:
            await asyncio.sleep(0.05)
            refuse = self.engine.faults(self.engine.config.served_names[0]).refuse
            if refuse and self._server is not None:
                self._server.close()
                self._server = None
                for conn in list(self.connections):  # as when the engine goes away: open connections reset too
                    conn.abort()
                log.warning("sim: refusing connections (fault)")
            elif not refuse and self._server is None:
                with contextlib.suppress(OSError):
                    await self._listen()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.uds is not None:
            self.uds.unlink(missing_ok=True)

    # ------------------------------------------------------------ routing

    async def handle(self, request: Request, conn: Connection) -> bool:
        """Answer one request; False closes the connection."""
        path, d = request.path, self.dialect
        model_hint = self.engine.config.served_names[0]
        faults = self.engine.faults(model_hint)
        if faults.hang:
            await asyncio.Event().wait()
        if self.engine.config.api_key and path not in d.open_paths and path != "/sim/info":
            if request.headers.get("authorization") != f"Bearer {self.engine.config.api_key}":
                conn.respond(401, d.error(401, "Unauthorized", "AuthenticationError", "invalid_api_key"))
                return True
        if request.method == "GET":
            return self._get(path, conn)
        try:
            body = orjson.loads(bytes(request.body) or b"{}")
        except orjson.JSONDecodeError:
            conn.respond(400, d.error(400, "the body is not JSON", "BadRequestError", None))
            return True
        if not isinstance(body, dict):
            conn.respond(400, d.error(400, "the body is not a JSON object", "BadRequestError", None))
            return True
        if path == "/sim/faults":
            self.engine.set_faults(Faults.parse(body))
            conn.respond(200, asdict(self.engine.config.faults))
            return True
        if path == "/tokenize" and d.tokenize:
            return self._tokenize(body, conn)
        if path == "/apply-template" and d.apply_template:
            conn.respond(200, {"prompt": render_chat(body.get("messages") or [])})
            return True
        kind = {"/v1/chat/completions": "chat", "/v1/completions": "completion", "/v1/embeddings": "embedding",
                "/v1/rerank": "rerank", "/rerank": "rerank"}.get(path)
        if kind is None:
            conn.respond(404, d.error(404, f"route {path} not found", "NotFoundError", None))
            return True
        return await self._inference(kind, body, conn)

    def _get(self, path: str, conn: Connection) -> bool:
        d, cfg = self.dialect, self.engine.config
        if path in ("/health", "/health_generate", "/ping"):
            conn.respond(200, d.health_body, "application/json")
        elif path == "/metrics" and d.metrics:
            conn.respond(200, self.engine.metrics().encode(), "text/plain; version=0.0.4")
        elif path == "/v1/models":
            conn.respond(200, {"object": "list", "data": [{"id": n, "object": "model", "created": now(), "owned_by": d.name,
                                                           "max_model_len": cfg.max_model_len} for n in cfg.served_names]})
        elif path == "/sim/info":
            conn.respond(200, {"dialect": d.name, "served_names": list(cfg.served_names), "argv": _redacted(cfg.argv),
                               "max_model_len": cfg.max_model_len, "max_num_seqs": cfg.max_num_seqs,
                               "kv_tokens": cfg.kv_capacity, "reasoning_parser": cfg.reasoning_parser,
                               "faults": asdict(self.engine.faults(cfg.served_names[0])),
                               "requests_total": self.engine.requests_total, "cancelled_total": self.engine.cancelled_total,
                               "running": self.engine.scheduler.running, "queued": self.engine.scheduler.queued,
                               "last_request": self.engine.last_request})
        elif path == "/slots" and d.name == "llamacpp":
            busy = self.engine.scheduler.running
            conn.respond(200, [{"id": i, "is_processing": i < busy} for i in range(cfg.max_num_seqs)])
        else:
            conn.respond(404, d.error(404, f"route {path} not found", "NotFoundError", None))
        return True

    def _tokenize(self, body: dict[str, Any], conn: Connection) -> bool:
        if "messages" in body:
            text = render_chat(body["messages"])
        else:
            text = body.get("prompt", body.get("content", ""))
        count = len(tokens_of(text if isinstance(text, str) else ""))
        ids = list(range(1, count + 1))
        if self.dialect.tokenize == "vllm":
            conn.respond(200, {"count": count, "max_model_len": self.engine.config.max_model_len, "tokens": ids})
        else:
            conn.respond(200, {"tokens": ids})
        return True

    # ------------------------------------------------------------ inference

    async def _inference(self, kind: str, body: dict[str, Any], conn: Connection) -> bool:
        d, cfg, engine = self.dialect, self.engine.config, self.engine
        model = str(body.get("model") or cfg.served_names[0])
        if d.name != "llamacpp" and model not in cfg.served_names:  # llama.cpp serves its one model, whatever the name
            conn.respond(404, d.error(404, f"The model `{model}` does not exist.", "NotFoundError", "model_not_found"))
            return True
        engine.last_request = {k: body.get(k) for k in ("model", "temperature", "top_p", "max_tokens", "stream")}
        engine.started(model)
        faults = engine.faults(model)
        if faults.http500 or (faults.fail_rate and self._random.random() < faults.fail_rate):
            conn.respond(500, d.error(500, "simulated engine failure (fault http500)", "InternalServerError", None))
            return True
        if faults.garbage:
            conn.respond(200, b"<html>simulated garbage (fault garbage)</html>", "text/html")
            return True
        if kind == "embedding":
            return self._embeddings(model, body, conn)
        if kind == "rerank":
            return self._rerank(model, body, conn)
        prefix = None  # the answer so far, when asked to go on with it (a resumed stream)
        if kind == "chat":
            messages = body.get("messages") or []
            if messages and messages[-1].get("role") == "assistant" and (
                    d.name == "llamacpp" or (body.get("continue_final_message") and d.name in ("vllm", "sglang"))):
                prefix, messages = str(messages[-1].get("content") or ""), messages[:-1]
            prompt = render_chat(body.get("messages") or [], generation_prompt=prefix is None)
            source = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "") or ""
            source = source if isinstance(source, str) else " ".join(p.get("text", "") for p in source if isinstance(p, dict))
        else:
            prompt = body.get("prompt") or ""
            prompt = prompt if isinstance(prompt, str) else " ".join(p for p in prompt if isinstance(p, str))
            source, prefix = own_output(prompt)
        n_prompt = len(tokens_of(prompt))
        asked = body.get("max_completion_tokens") or body.get("max_tokens")
        room = cfg.max_model_len - n_prompt
        too_long = n_prompt >= cfg.max_model_len if d.name == "llamacpp" else (n_prompt >= cfg.max_model_len or
                                                                              (asked is not None and asked > room))
        if too_long:
            message, kind_, extra = d.context_error(n_prompt, asked or 0, cfg.max_model_len)
            err = d.error(400, message, kind_, extra.get("code"))
            (err["error"] if "error" in err else err).update({k: v for k, v in extra.items() if k != "code"})
            conn.respond(400, err)
            return True
        limit = min(asked, room) if asked is not None else room
        answer = engine.answer(model, source, None if prefix else limit)
        pieces = self._pieces(answer, kind)
        finish = answer.finish_reason
        if prefix:
            pieces = after(pieces, prefix)
            if len(pieces) > limit:
                pieces, finish = pieces[:limit], "length"
        need = n_prompt + (asked or len(pieces))
        await engine.scheduler.admit(need)
        try:
            engine.prompt_tokens_total += n_prompt
            await asyncio.sleep(engine.first_token_delay(n_prompt, model))
            if body.get("stream"):
                await self._stream(kind, model, body, answer, pieces, finish, n_prompt, conn, faults.break_after)
                return not d.close_after_stream
            for _ in range(max(len(pieces) - 1, 0)):
                await asyncio.sleep(engine.token_delay(model))
            engine.generation_tokens_total += len(pieces)
            conn.respond(200, self._whole(kind, model, answer, pieces, finish, n_prompt))
            return True
        except asyncio.CancelledError:
            engine.cancelled_total += 1
            raise
        finally:
            engine.scheduler.release(need)

    def _pieces(self, answer: Answer, kind: str) -> list[tuple[str, str]]:
        """(field, text) per token: reasoning in its own field when the engine parses it, else inline."""
        if not answer.reasoning:
            return [("content", t) for t in answer.content]
        if self.engine.config.reasoning_parser and kind == "chat":
            return [(self.dialect.reasoning_field, t) for t in answer.reasoning] + [("content", t) for t in answer.content]
        # As DeepSeek-R1 answers: its chat template opened <think>, the output closes it.
        return ([("content", t) for t in answer.reasoning] + [("content", "\n</think>\n\n")] +
                [("content", t) for t in answer.content])

    def _usage(self, n_prompt: int, answer: Answer, pieces: int) -> dict[str, Any]:
        usage = {"prompt_tokens": n_prompt, "completion_tokens": pieces, "total_tokens": n_prompt + pieces}
        if answer.reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": len(answer.reasoning)}
        return usage

    def _whole(self, kind: str, model: str, answer: Answer, pieces: list[tuple[str, str]], finish: str,
               n_prompt: int) -> dict[str, Any]:
        text: dict[str, str] = {}
        for name, piece in pieces:
            text[name] = text.get(name, "") + piece
        base = {"id": f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-sim-{next(_ids)}", "created": now(), "model": model,
                "usage": self._usage(n_prompt, answer, len(pieces))}
        if kind == "chat":
            message = {"role": "assistant", "content": text.get("content", "")}
            if self.dialect.reasoning_field in text:
                message[self.dialect.reasoning_field] = text[self.dialect.reasoning_field]
            out = {**base, "object": "chat.completion",
                   "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}]}
        else:
            out = {**base, "object": "text_completion",
                   "choices": [{"index": 0, "text": text.get("content", ""), "finish_reason": finish,
                                "logprobs": None}]}
        if self.dialect.timings:
            out["timings"] = {"prompt_n": n_prompt, "predicted_n": len(pieces)}
        return out

    async def _stream(self, kind: str, model: str, body: dict[str, Any], answer: Answer, pieces: list[tuple[str, str]],
                      finish: str, n_prompt: int, conn: Connection, break_after: int | None) -> None:
        end = b"\r\n\r\n" if self.engine.config.crlf else b"\n\n"
        ident = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-sim-{next(_ids)}"
        head = {"id": ident, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
                "created": now(), "model": model}

        def event(payload: dict[str, Any] | bytes) -> None:
            data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
            conn.chunk(b"data: " + data + end)

        def choice(field: str | None, text: str | None, finish: str | None = None) -> dict[str, Any]:
            if kind == "chat":
                return {"index": 0, "delta": {field: text} if field else {}, "logprobs": None, "finish_reason": finish}
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

        conn.start_stream(close=self.dialect.close_after_stream)
        if kind == "chat":
            event({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                        "finish_reason": None}]})
        for i, (field, piece) in enumerate(pieces):
            if i:
                await asyncio.sleep(self.engine.token_delay(model))
            if break_after is not None and i >= break_after:
                raise Reset()
            event({**head, "choices": [choice(field, piece)]})
            self.engine.generation_tokens_total += 1
        last = {**head, "choices": [choice(None, None if kind == "chat" else "", finish)]}
        if self.dialect.timings:
            last["timings"] = {"prompt_n": n_prompt, "predicted_n": len(pieces)}
        event(last)
        if (body.get("stream_options") or {}).get("include_usage"):
            event({**head, "choices": [], "usage": self._usage(n_prompt, answer, len(pieces))})
        event(b"[DONE]")
        conn.end_stream()

    def _embeddings(self, model: str, body: dict[str, Any], conn: Connection) -> bool:
        items = body.get("input")
        items = items if isinstance(items, list) and items and not isinstance(items[0], int) else [items]
        data, total = [], 0
        for i, item in enumerate(items):
            text = item if isinstance(item, str) else " ".join(str(t) for t in item or [])
            n = len(item) if isinstance(item, list) else len(tokens_of(text))
            total += n
            data.append({"object": "embedding", "index": i, "embedding": self.engine.embedding(text)})
        self.engine.prompt_tokens_total += total
        conn.respond(200, {"object": "list", "data": data, "model": model,
                           "usage": {"prompt_tokens": total, "total_tokens": total}})
        return True

    def _rerank(self, model: str, body: dict[str, Any], conn: Connection) -> bool:
        """Each document scored against the query (the share of the query's words it holds), in
        the dialect's shape: vLLM's and llama.cpp's ``results``, SGLang's bare list."""
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            conn.respond(400, self.dialect.error(400, "query and documents are required", "BadRequestError", None))
            return True
        texts = [d if isinstance(d, str) else str((d or {}).get("text", "")) for d in documents]
        scores = [self.engine.relevance(query, text) for text in texts]
        counts = [len(tokens_of(query)) + len(tokens_of(text)) + 2 for text in texts]
        total = sum(counts)
        self.engine.prompt_tokens_total += total
        best = sorted(range(len(texts)), key=lambda i: -scores[i])
        if self.dialect.name == "sglang":
            conn.respond(200, [{"score": scores[i], "document": texts[i], "index": i,
                                "meta_info": {"id": f"{self.engine.requests_total}-{i}", "prompt_tokens": counts[i]}}
                               for i in best])
        elif self.dialect.name == "llamacpp":
            conn.respond(200, {"model": model, "object": "list", "usage": {"prompt_tokens": total, "total_tokens": total},
                               "results": [{"index": i, "relevance_score": scores[i]} for i in range(len(texts))]})
        else:
            conn.respond(200, {"id": f"rerank-{self.engine.requests_total}", "model": model,
                               "usage": {"total_tokens": total},
                               "results": [{"index": i, "document": {"text": texts[i]}, "relevance_score": scores[i]}
                                           for i in best]})
        return True


def after(pieces: list[tuple[str, str]], prefix: str) -> list[tuple[str, str]]:
    """What follows ``prefix`` in an answer's pieces: the simulator continues its own answer as a
    deterministic model would (an answer it did not write: it starts its own afresh)."""
    text = "".join(piece for _, piece in pieces)
    if not text.startswith(prefix):
        return pieces
    at = 0
    for i, (field, piece) in enumerate(pieces):
        if at + len(piece) > len(prefix):
            cut = len(prefix) - at
            return ([(field, piece[cut:])] if cut else [(field, piece)]) + pieces[i + 1:]
        at += len(piece)
    return []


def own_output(prompt: str) -> tuple[str, str | None]:
    """A completions prompt that ends with the start of the simulator's own answer to what came
    before (a resumed stream) as (that source, the answer so far); else (prompt, None)."""
    for marker in ("Echo:", "Thinking"):
        at = prompt.rfind(marker)
        if at > 0:
            return prompt[:at], prompt[at:]
    return prompt, None


def _redacted(argv: tuple[str, ...]) -> list[str]:
    """The command line without its secrets: /sim/info is open, and a key is a key even in a rehearsal."""
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("<redacted>")
            hide = False
        elif arg == "--api-key":
            out.append(arg)
            hide = True
        else:
            out.append("--api-key=<redacted>" if arg.startswith("--api-key=") else arg)
    return out
