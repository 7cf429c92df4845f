"""Prompts for ``seekstack bench``: built-in sets, or a JSONL file of your own.

Built-in sets (deterministic; the seed picks the order):

- ``chat``: short chat questions, English and Chinese mixed (the default);
- ``en`` / ``zh``: the same questions in one language;
- ``long``: long-context requests — a passage of about 1,500 words with a question after it
  (fits a 4k context; use ``--long-words`` to size it to your model).

A JSONL file has one request per line: ``{"prompt": "…"}`` or ``{"messages": [...]}``,
optionally with ``"max_tokens"``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError

EN = [
    "What is the capital of France?",
    "Explain in two sentences what a hash function is.",
    "Give three tips for writing clear emails.",
    "What is the difference between a list and a tuple in Python?",
    "Summarise the water cycle for a ten-year-old.",
    "Name three uses of a database index.",
    "Why is the sky blue?",
    "Write a haiku about autumn.",
    "How do I boil an egg?",
    "What does HTTP status 429 mean?",
    "List the planets of the solar system.",
    "What is continuous batching in LLM serving?",
]
ZH = [
    "法国的首都是哪里？",
    "用两句话解释什么是哈希函数。",
    "写清楚电子邮件的三个建议是什么？",
    "Python 中列表和元组有什么区别？",
    "给十岁的孩子讲讲水循环。",
    "数据库索引有哪三种用途？",
    "天空为什么是蓝色的？",
    "写一首关于秋天的短诗。",
    "怎样煮鸡蛋？",
    "HTTP 状态码 429 是什么意思？",
    "列出太阳系的行星。",
    "大模型推理中的连续批处理是什么？",
]
_WORDS = ("the gateway routes each request to a healthy replica while the supervisor restarts engines that fail "
          "their heartbeat and the audit log records every decision with a signed chain so that operators can "
          "prove what happened long after the fact in banks hospitals and factories alike").split()
SETS = ("chat", "en", "zh", "long")


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, Any]]
    max_tokens: int | None = None


def builtin(name: str, count: int, seed: int = 0, long_words: int = 1500) -> list[Prompt]:
    rng = random.Random(seed)
    if name == "long":
        out = []
        for i in range(count):
            words = [rng.choice(_WORDS) for _ in range(long_words)]
            question = rng.choice(EN)
            out.append(Prompt([{"role": "user", "content": " ".join(words) + f"\n\nQuestion {i}: {question}"}]))
        return out
    pool = {"chat": EN + ZH, "en": EN, "zh": ZH}.get(name)
    if pool is None:
        raise InvalidRequestError(f"unknown dataset {name!r}", fix=f"use one of {', '.join(SETS)}, or --dataset-file FILE.jsonl")
    return [Prompt([{"role": "user", "content": rng.choice(pool)}]) for _ in range(count)]


def from_jsonl(path: Path, count: int, seed: int = 0) -> list[Prompt]:
    """``count`` prompts from a JSONL file (cycled when it has fewer lines)."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc.strerror}", fix="check the --dataset-file path") from None
    prompts = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"{path} line {n} is not JSON ({exc.msg})", fix="one JSON object per line") from None
        if isinstance(row, dict) and isinstance(row.get("messages"), list):
            messages = row["messages"]
        elif isinstance(row, dict) and isinstance(row.get("prompt"), str):
            messages = [{"role": "user", "content": row["prompt"]}]
        else:
            raise InvalidRequestError(f"{path} line {n} has neither \"prompt\" (text) nor \"messages\" (a list)",
                                      fix='write lines like {"prompt": "Hello"}')
        max_tokens = row.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise InvalidRequestError(f"{path} line {n}: max_tokens must be a positive integer", fix="fix or drop it")
        prompts.append(Prompt(messages, max_tokens))
    if not prompts:
        raise InvalidRequestError(f"{path} has no requests", fix="add one JSON object per line")
    random.Random(seed).shuffle(prompts)
    return [prompts[i % len(prompts)] for i in range(count)]
