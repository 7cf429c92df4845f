"""The simulated engine, without HTTP: a scheduler with KV capacity, deterministic output, timing
that grows with load, faults, and the counters its metrics show.

Tokens are whitespace-delimited words (with the space before them): ``"Hello there"`` is two
tokens. A chat prompt is rendered as ``<|role|>`` markers plus the message text, so it counts a
few tokens more than its words, as real chat templates do.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

log = logging.getLogger("seekstack.sim")

TOKEN = re.compile(r"\s*\S+")
WORDS = ("alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "light", "north", "field", "paper", "glass")


def tokens_of(text: str) -> list[str]:
    return TOKEN.findall(text)


def render_chat(messages: list[dict[str, Any]], generation_prompt: bool = True) -> str:
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(f"<|{message.get('role', 'user')}|>\n{content or ''}\n")
    return "".join(parts) + ("<|assistant|>\n" if generation_prompt else "")


@dataclass
class Faults:
    """What is wrong with the engine right now (all off: healthy)."""

    refuse: bool = False             # close the listening socket: connections are refused
    hang: bool = False               # accept, read, never answer (health too)
    http500: bool = False            # inference routes answer 500 in the dialect's error shape
    garbage: bool = False            # inference routes answer 200 with a body that is not JSON
    break_after: int | None = None   # a stream breaks (connection reset) after this many tokens
    slow: float = 1.0                # tokens come this many times slower
    exit_after: int | None = None    # the process exits when this many inference requests have started
    fail_rate: float = 0.0           # this share of inference requests answer 500 (at random)

    @classmethod
    def parse(cls, specs: list[str] | dict[str, Any]) -> "Faults":
        """``["http500", "break_after=5", "slow=3"]`` or ``{"http500": true, "break_after": 5}``."""
        if isinstance(specs, dict):
            items = specs.items()
        else:
            items = [(s.partition("=")[0], s.partition("=")[2] or True) for s in specs]
        out, known = cls(), {f.name: f for f in fields(cls)}
        for name, value in items:
            name = name.replace("-", "_")
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; faults: {', '.join(known)}")
            kind = known[name].type
            if "bool" in str(kind):
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
            elif "float" in str(kind):
                value = float(value)
            else:
                value = None if value in (None, "", False) else int(value)
            setattr(out, name, value)
        return out


@dataclass
class SimConfig:
    dialect: str = "vllm"
    served_names: tuple[str, ...] = ("sim",)
    max_model_len: int = 4096
    max_num_seqs: int = 16
    kv_tokens: int | None = None          # KV capacity in tokens (default: max_model_len × max_num_seqs)
    ttft_ms: float = 10.0                 # time to first token of a lone short request
    prefill_ms_per_1k: float = 2.0        # more per 1,000 prompt tokens
    itl_ms: float = 2.0                   # inter-token latency of a lone sequence
    load_factor: float = 0.05             # each other running sequence makes tokens this much slower
    reasoning: bool | None = None         # emit DeepSeek-R1 style reasoning (None: when the name says R1)
    reasoning_parser: bool = False        # the engine splits reasoning out itself (vLLM / SGLang parsers)
    mode: str = "echo"                    # echo | random (seeded)
    seed: int = 0
    output_len: int | None = None         # every answer this many tokens (benchmarks); else echo length
    api_key: str | None = None
    crlf: bool = False                    # CRLF line ends in SSE (some OpenAI-compatible servers)
    embedding_dim: int = 16
    faults: Faults = field(default_factory=Faults)
    faults_file: Path | None = None       # JSON {"*" or a served name: {fault: value}}, re-read when it changes
    argv: tuple[str, ...] = ()            # the command line it was started with (the launch it stands in for)
    version: str | None = None            # NAME@VERSION when its model file comes from the store (faults may name it)

    @property
    def kv_capacity(self) -> int:
        return self.kv_tokens or self.max_model_len * self.max_num_seqs


class Scheduler:
    """Admit a sequence when a slot and its KV room are free; the rest wait in order."""

    def __init__(self, slots: int, kv_tokens: int):
        self.slots, self.kv_tokens = slots, kv_tokens
        self.running = 0
        self.kv_used = 0
        self._waiting: collections.deque[tuple[int, asyncio.Future]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def _fits(self, need: int) -> bool:
        return self.running < self.slots and self.kv_used + need <= self.kv_tokens

    async def admit(self, need: int) -> None:
        need = min(need, self.kv_tokens)
        if not self._waiting and self._fits(need):
            self._take(need)
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (need, waiter)
        self._waiting.append(entry)
        try:
            await waiter
        except BaseException:
            if entry in self._waiting:
                self._waiting.remove(entry)
            elif waiter.done() and not waiter.cancelled():
                self.release(need)  # admitted as we were cancelled: give it back
            raise

    def _take(self, need: int) -> None:
        self.running += 1
        self.kv_used += need

    def release(self, need: int) -> None:
        need = min(need, self.kv_tokens)
        self.running -= 1
        self.kv_used -= need
        while self._waiting and self._fits(self._waiting[0][0]):
            need, waiter = self._waiting.popleft()
            if not waiter.done():
                self._take(need)
                waiter.set_result(None)


@dataclass
class Answer:
    reasoning: list[str]
    content: list[str]
    finish_reason: str

    @property
    def tokens(self) -> int:
        return len(self.reasoning) + len(self.content)


class SimEngine:
    def __init__(self, config: SimConfig):
        self.config = config
        self.scheduler = Scheduler(config.max_num_seqs, config.kv_capacity)
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.requests_total = 0
        self.cancelled_total = 0
        self.last_request: dict[str, Any] = {}  # its model and sampling parameters (no text), for rehearsals
        self._file_faults: dict[str, Faults] = {}
        self._file_mtime: float | None = None

    # ------------------------------------------------------------ faults

    def faults(self, model: str | None = None) -> Faults:
        self._reload_faults()
        specific = self._file_faults.get(model or "") or (self._file_faults.get(self.config.version)
                                                          if self.config.version else None) or self._file_faults.get("*")
        return specific or self.config.faults

    def _reload_faults(self) -> None:
        path = self.config.faults_file
        if path is None:
            return
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._file_mtime:
            return
        self._file_mtime = mtime
        if mtime is None:
            self._file_faults = {}
            return
        try:
            data = json.loads(path.read_text() or "{}")
            self._file_faults = {name: Faults.parse(spec) for name, spec in data.items()}
        except (ValueError, OSError, AttributeError) as exc:
            log.warning("sim: faults file %s ignored: %s", path, exc)
            self._file_faults = {}
        log.warning("sim: faults now %s", {k: v for k, v in self._file_faults.items()})

    def set_faults(self, faults: Faults) -> None:
        self.config = replace(self.config, faults=faults)

    # ------------------------------------------------------------ work

    def reasoning_on(self, model: str) -> bool:
        if self.config.reasoning is not None:
            return self.config.reasoning
        name = model.lower().replace("_", "-")
        return "deepseek-r1" in name or "r1-distill" in name or "-r1" in name

    def answer(self, model: str, source: str, max_tokens: int | None) -> Answer:
        words = [w.strip() for w in tokens_of(source)][-32:] or ["nothing"]
        if self.config.mode == "random":
            digest = hashlib.sha256(f"{self.config.seed}:{source}".encode()).digest()
            rng = random.Random(digest)
            words = [rng.choice(WORDS) for _ in range(max(len(words), 8))]
        reasoning = (["Thinking"] + [" about"] + [" " + w for w in words[:6]] + ["."]) if self.reasoning_on(model) else []
        content = ["Echo:"] + [" " + w for w in words]
        if self.config.output_len is not None:
            total = self.config.output_len
            cycle = [" " + w for w in words]
            while len(reasoning) + len(content) < total:
                content.extend(cycle)
            content = content[:max(total - len(reasoning), 0)]
            reasoning = reasoning[:total]
        finish = "stop"
        if max_tokens is not None and len(reasoning) + len(content) > max_tokens:
            keep_r = min(len(reasoning), max_tokens)
            reasoning, content = reasoning[:keep_r], content[:max_tokens - keep_r]
            finish = "length"
        return Answer(reasoning, content, finish)

    def first_token_delay(self, prompt_tokens: int, model: str) -> float:
        cfg = self.config
        return (cfg.ttft_ms + cfg.prefill_ms_per_1k * prompt_tokens / 1000) / 1000 * self.faults(model).slow

    def token_delay(self, model: str) -> float:
        cfg = self.config
        others = max(self.scheduler.running - 1, 0)
        return cfg.itl_ms / 1000 * (1 + cfg.load_factor * others) * self.faults(model).slow

    def started(self, model: str) -> None:
        """One more inference request has arrived; the ``exit_after`` fault may end the process here."""
        self.requests_total += 1
        exit_after = self.faults(model).exit_after
        if exit_after is not None and self.requests_total >= exit_after:
            log.warning("sim: exiting (fault exit_after=%d)", exit_after)
            os._exit(1)

    def metrics(self) -> str:
        d = _dialect(self.config.dialect)
        label = '{model_name="%s"}' % self.config.served_names[0]
        lines = []
        for name, kind, value in ((d.queued, "gauge", self.scheduler.queued), (d.running, "gauge", self.scheduler.running),
                                  (d.kv_use, "gauge", self.scheduler.kv_used / max(self.scheduler.kv_tokens, 1)),
                                  (d.prompt_total, "counter", self.prompt_tokens_total),
                                  (d.generation_total, "counter", self.generation_tokens_total),
                                  ("sim:requests_cancelled_total", "counter", self.cancelled_total),
                                  ("sim:requests_total", "counter", self.requests_total)):
            if name is None:
                continue
            lines += [f"# TYPE {name} {kind}", f"{name}{label} {value}"]
        return "\n".join(lines) + "\n"

    @staticmethod
    def relevance(query: str, document: str) -> float:
        """A reranker's score, deterministically: the share of the query's words found in the document."""
        words = set(query.lower().split())
        return round(len(words & set(document.lower().split())) / max(len(words), 1), 6)

    def embedding(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode()).digest()
        raw = [(b - 127.5) / 127.5 for b in (digest * ((self.config.embedding_dim // 32) + 1))[:self.config.embedding_dim]]
        norm = sum(v * v for v in raw) ** 0.5 or 1.0
        return [v / norm for v in raw]


def _dialect(name: str):
    from .dialects import DIALECTS

    return DIALECTS[name]


def now() -> int:
    return int(time.time())
