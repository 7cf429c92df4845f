"""What a served model can do, as data: the gateway reads these, never an engine's name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Capabilities:
    context_length: int                 # tokens per request (prompt + completion)
    slots: int = 1                      # sequences decoded together per replica
    chat: bool = True
    completions: bool = True
    embeddings: bool = False
    rerank: bool = False                # scores documents against a query (/v1/rerank)
    media_input: bool = False           # takes image / audio parts in chat messages (else text only)
    counts_tokens: bool = True          # the backend counts prompts exactly (else bounded by their size)
    reasoning_format: str = "none"      # "none" | "deepseek_r1"
    native_reasoning: bool = False      # the engine fills reasoning_content itself
    cancels_only_streams: bool = False  # notices a departed client only on streams: non-streamed answers are streamed
    resumes: str | None = None          # how it continues a final assistant message: "continue_final_message"
                                        # (vLLM, SGLang), "prefill" (llama.cpp), None (unknown: chat streams are not resumed)
    chat_template: str | None = None
    sampling_defaults: dict[str, Any] = field(default_factory=dict)
