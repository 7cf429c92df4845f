"""What each simulated engine says, as data: metric names, error shapes and wordings, routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Dialect:
    name: str
    queued: str | None            # metric names (None: the engine does not expose it)
    running: str | None
    kv_use: str | None
    prompt_total: str | None
    generation_total: str | None
    tokenize: str | None          # "vllm" | "llamacpp" | None: the shape of its /tokenize
    apply_template: bool          # llama.cpp's /apply-template
    reasoning_field: str          # where a parsed reasoning goes in a message / delta
    open_paths: tuple[str, ...]   # routes served without the API key
    error: Callable[[int, str, str, str | None], dict[str, Any]]   # (status, message, type, code) → body
    context_error: Callable[[int, int, int], tuple[str, str, dict[str, Any]]]  # (prompt, completion, ctx) → (message, type, extra)
    timings: bool = False         # llama.cpp: `timings` in the last chunk and in answers
    close_after_stream: bool = False
    metrics: bool = True
    health_body: bytes = b""


def _openai_error(status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _vllm_error(status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def _sglang_error(status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": kind, "param": None, "code": status}


def _llamacpp_error(status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "type": kind}}


def _vllm_context(prompt: int, completion: int, ctx: int) -> tuple[str, str, dict[str, Any]]:
    return (f"This model's maximum context length is {ctx} tokens. However, you requested {prompt + completion} "
            f"tokens ({prompt} in the messages, {completion} in the completion). Please reduce the length of the "
            "messages or completion.", "BadRequestError", {})


def _sglang_context(prompt: int, completion: int, ctx: int) -> tuple[str, str, dict[str, Any]]:
    if prompt >= ctx:
        return f"The input ({prompt} tokens) is longer than the model's context length ({ctx} tokens).", "BadRequestError", {}
    return (f"Requested token count exceeds the model's maximum context length of {ctx} tokens. You requested a "
            f"total of {prompt + completion} tokens: {prompt} tokens from the input messages and {completion} tokens "
            "for the completion. Please reduce the number of tokens in the input messages or the completion to fit "
            "within the limit.", "BadRequestError", {})


def _llamacpp_context(prompt: int, completion: int, ctx: int) -> tuple[str, str, dict[str, Any]]:
    return ("the request exceeds the available context size, try increasing it", "exceed_context_size_error",
            {"n_prompt_tokens": prompt, "n_ctx": ctx})


def _openai_context(prompt: int, completion: int, ctx: int) -> tuple[str, str, dict[str, Any]]:
    return (f"This model's maximum context length is {ctx} tokens. However, your messages resulted in "
            f"{prompt + completion} tokens. Please reduce the length of the messages.", "invalid_request_error",
            {"code": "context_length_exceeded"})


DIALECTS: dict[str, Dialect] = {
    "vllm": Dialect("vllm", "vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
                    "vllm:prompt_tokens_total", "vllm:generation_tokens_total", tokenize="vllm", apply_template=False,
                    reasoning_field="reasoning", open_paths=("/health", "/metrics", "/ping", "/version"),
                    error=_vllm_error, context_error=_vllm_context),
    "sglang": Dialect("sglang", "sglang:num_queue_reqs", "sglang:num_running_reqs", "sglang:token_usage",
                      "sglang:prompt_tokens_total", "sglang:generation_tokens_total", tokenize=None,
                      apply_template=False, reasoning_field="reasoning_content",
                      open_paths=("/health", "/health_generate", "/metrics", "/get_server_info"),
                      error=_sglang_error, context_error=_sglang_context),
    "llamacpp": Dialect("llamacpp", "llamacpp:requests_deferred", "llamacpp:requests_processing", None,
                        "llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total", tokenize="llamacpp",
                        apply_template=True, reasoning_field="reasoning_content", open_paths=("/health", "/metrics"),
                        error=_llamacpp_error, context_error=_llamacpp_context, timings=True,
                        close_after_stream=True, health_body=b'{"status":"ok"}'),
    "openai": Dialect("openai", None, None, None, None, None, tokenize=None, apply_template=False,
                      reasoning_field="reasoning_content", open_paths=(), error=_openai_error,
                      context_error=_openai_context, metrics=False),
}
