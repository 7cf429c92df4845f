"""Pure pydantic request types for the OpenAI/DeepSeek API. No engine imports here.

Strict at the edge: every field OpenAI defines is declared with its type and checked
without coercion (``"max_tokens": "4"`` is an error naming ``max_tokens``, not a 4 that
reaches the engine as a string); content parts, tool calls and tools are checked part by
part. Beside OpenAI's fields, a small allow-list of engine sampling parameters passes
through (``ENGINE_EXTRAS``: ``top_k``, ``min_p``, ``repetition_penalty``, ``grammar`` …).
Anything else is refused, naming the parameter — in particular an engine's own length
limits (``n_predict``, ``max_new_tokens``), which would slip past ``max_tokens`` and every
token budget.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ChatMessage", "StreamOptions", "ChatCompletionRequest", "CompletionRequest", "EmbeddingRequest",
           "RerankRequest", "INSTEAD"]

# Parameters that mean "generate this many tokens" in an engine's own dialect: refused, with the OpenAI name to use.
INSTEAD = {"n_predict": "max_tokens", "max_new_tokens": "max_tokens", "max_length": "max_tokens",
           "num_predict": "max_tokens", "max_gen_len": "max_tokens"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    """A nested object whose inner fields the engine interprets (JSON schemas, metadata)."""

    model_config = ConfigDict(extra="allow", strict=True)


# ------------------------------------------------------------------ messages
class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(_Strict):
    data: str
    format: Literal["wav", "mp3"]


class AudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FilePart(_Strict):
    type: Literal["file"]
    file: _Open


class RefusalPart(_Strict):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[Union[TextPart, ImagePart, AudioPart, FilePart, RefusalPart], Field(discriminator="type")]


class FunctionCall(_Strict):
    name: str = Field(min_length=1, max_length=256)
    arguments: str


class ToolCall(_Strict):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=256)
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = Field(None, max_length=256)
    function_call: FunctionCall | None = None
    refusal: str | None = None
    audio: _Open | None = None             # an earlier assistant turn's audio, by id
    reasoning_content: str | None = None   # DeepSeek: never sent back (refused with a clear message)
    prefix: bool | None = None             # DeepSeek: continue this final assistant message


class FunctionDefinition(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _Open | None = None


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None


# ------------------------------------------------------------------ requests
Stop = Union[str, Annotated[list[str], Field(max_length=16)], None]
Penalty = Annotated[float, Field(ge=-2, le=2)]


class _EngineExtras(_Strict):
    """Engine sampling parameters allowed beside OpenAI's (vLLM, SGLang and llama.cpp share these names)."""

    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    typical_p: float | None = Field(None, gt=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=10)
    repeat_penalty: float | None = Field(None, gt=0, le=10)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = None
    grammar: str | None = Field(None, max_length=4096)
    json_schema: dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @field_validator("grammar")
    @classmethod
    def _one_line(cls, grammar: str | None) -> str | None:
        # llama.cpp writes a grammar it cannot parse into its log as is: one line cannot forge others.
        if grammar is not None and any(ord(c) < 0x20 or ord(c) == 0x7f for c in grammar):
            raise ValueError("must be one line of GBNF without control characters; for structured output "
                             "send response_format with a json_schema")
        return grammar


ENGINE_EXTRAS = tuple(_EngineExtras.model_fields)


class _Sampling(_EngineExtras):
    model: str = Field(min_length=1, max_length=256)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=1)
    stop: Stop = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    user: str | None = Field(None, max_length=256)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: list[Literal["text"]] | None = None
    prediction: _Open | None = None
    audio: _Open | None = None
    web_search_options: _Open | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prompt_cache_key: str | None = Field(None, max_length=1024)
    safety_identifier: str | None = Field(None, max_length=256)

    def completion_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=1)

    def completion_budget(self) -> int | None:
        return self.max_tokens


class EmbeddingRequest(_Strict):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = Field(None, max_length=256)


class RerankDocument(_Strict):
    text: str


class RerankRequest(_Strict):
    """Score documents against a query (Jina's and Cohere's /v1/rerank, as vLLM and llama.cpp serve it)."""

    model: str = Field(min_length=1, max_length=256)
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument] = Field(min_length=1, max_length=1000)
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = True
    user: str | None = Field(None, max_length=256)

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]
