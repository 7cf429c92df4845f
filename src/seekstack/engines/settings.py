"""Each engine's settings: one pydantic model per engine kind, chosen by ``kind`` (a discriminated union).

In ``seekstack.yaml`` a model's ``engine`` is a kind (``engine: vllm``) or a mapping with the
kind and that engine's options (``engine: {kind: vllm, tensor_parallel: 8}``). The kinds are a
registry, not a closed list: a third-party package adds one through the ``seekstack.engines``
entry-point group (see :mod:`seekstack.engines.registry`), and its settings class is found here by
its kind the same way the built-ins are.

This module is pure pydantic: the configuration imports it, and it imports nothing of seekstack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SIMULATE_HELP = ("Run `seekstack sim` in this engine's dialect instead of the engine, with the very launch "
                 "command seekstack would run (for rehearsals and tests on machines without a GPU). Logged loudly.")


class EngineSettings(BaseModel):
    """Options every engine kind has; subclasses add their own."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    kind: str = Field(description="The engine kind.")
    url: str | None = Field(None, description="An engine of this kind already running at this base URL (another host, another team's): seekstack does not start it, and talks to it in this engine's dialect (its metrics, its token counting). Without it (or `endpoints`), seekstack starts the engine.")
    endpoints: list[str] = Field(default_factory=list, description="Several engines of this kind already running (on GPU hosts, each started by `seekstack engines`): one endpoint of this model each, heartbeated and load-balanced. Use instead of `url`.")
    discover: str | None = Field(None, description="Instead of `url` / `endpoints`: a URL whose host name resolves (DNS) to every engine of this model, e.g. a Kubernetes headless Service (`http://engines-r1.llm.svc.cluster.local:8000`, one address per pod). Each address is an endpoint, on the URL's scheme and port; the name is resolved again every `supervisor.discover_every` seconds, so engines that come and go (a scale-up, a rolling update) are added, and drained, without a reload. A lookup that fails keeps the endpoints there are; a name with no addresses leaves none. Whoever can change the name's records receives the requests and the engine key: use a DNS you trust (the cluster's), or https with `ca_file`.")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="The environment variable holding the engine's API key (a bearer token; never logged). With `url` / `endpoints`: the key sent. On an engine seekstack starts: the key it requires, shared with the gateways on other hosts; without one, a new key is made at each start and only this host's gateway holds it.")
    api_key_file: Path | None = Field(None, description="A file holding the engine's API key (mode 0600 or stricter; never logged); like `api_key_env`.")
    ca_file: Path | None = Field(None, description="With `url` / `endpoints` on `https://`: verify the engines' certificates against the CA certificates in this PEM file (a private CA, e.g. the one of a TLS-terminating proxy in front of each engine) instead of the system's.")
    cert_file: Path | None = Field(None, description="With `url` / `endpoints` on `https://`: the client certificate (PEM) the gateway presents to engines that require one (mutual TLS, e.g. a TLS-terminating proxy in front of each engine that checks client certificates). It may hold the private key too.")
    key_file: Path | None = Field(None, description="The private key of `cert_file` (PEM, mode 0600 or stricter), unless `cert_file` holds it.")
    host: str = Field("127.0.0.1", description="Address a started engine binds. Loopback by default: only this host's gateway reaches it. On any TCP address every request must carry the engine's key; for gateways on other hosts (`seekstack engines`) that is the key in `api_key_file` or `api_key_env`.")
    port: int | None = Field(None, ge=1, le=65535, description="Port of a started engine (replica i listens on port + i); default: a free port, or a private Unix socket where the engine can use one.")
    package: ClassVar[str | None] = None   # the Python package that must be installed to run it here
    install: ClassVar[str] = ""            # how to install that package

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str | None) -> str | None:
        return None if url is None else base_url(url)

    @field_validator("endpoints")
    @classmethod
    def _base_urls(cls, urls: list[str]) -> list[str]:
        return [base_url(url) for url in urls]

    @field_validator("discover")
    @classmethod
    def _discovered_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        url = base_url(url)
        host, _, port = url.partition("://")[2].rpartition(":")
        if url.startswith("unix://") or not host or not port.isdigit() or "/" in port:
            raise ValueError(f"{url!r}: give http(s)://NAME:PORT — a host name that resolves to the engines, "
                             "and the port they listen on")
        return url

    @model_validator(mode="after")
    def _one_location(self) -> "EngineSettings":
        if sum((self.url is not None, bool(self.endpoints), self.discover is not None)) > 1:
            raise ValueError("set one of `url` (one engine), `endpoints` (several) or `discover` (found by DNS)")
        if len(set(self.endpoints)) != len(self.endpoints):
            raise ValueError("endpoints: each address once")
        return self

    @property
    def launched(self) -> bool:
        """seekstack starts this engine (False: servers that already run at ``url`` / ``endpoints``,
        or that ``discover`` finds)."""
        return self.url is None and not self.endpoints and self.discover is None

    @property
    def addresses(self) -> list[str]:
        """The base URLs of engines that already run (empty for an engine seekstack starts)."""
        return list(self.endpoints) if self.endpoints else [self.url] if self.url else []

    @property
    def simulated(self) -> bool:
        return self.launched and bool(getattr(self, "simulate", False))


class LlamaCppSettings(EngineSettings):
    """llama.cpp through xllamacpp (CPU or GPU). Its tuning lives on the model entry itself
    (``context``, ``slots``, ``threads``, ``gpu_layers``, ``prompt_cache_mib``, ``rope_scaling``)."""

    kind: Literal["llamacpp"] = Field("llamacpp", description="llama.cpp (xllamacpp), started by seekstack unless `url` is set.")
    package: ClassVar[str | None] = "xllamacpp"
    install: ClassVar[str] = "pip install xllamacpp (a dependency of seekstack)"
    simulate: bool = Field(False, description=SIMULATE_HELP)


class _GpuServerSettings(EngineSettings):
    tensor_parallel: int | None = Field(None, ge=1, le=64, description="GPUs one replica's weights are split across (default: the planner's answer for this model and hardware).")
    data_parallel: int = Field(1, ge=1, le=64, description="Copies of the model inside one engine process group.")
    kv_cache_dtype: Literal["auto", "fp8"] = Field("auto", description="KV cache precision; fp8 halves its memory.")
    extra_args: list[str] = Field(default_factory=list, description="More command-line arguments passed to the engine as they are (after seekstack's own).")
    simulate: bool = Field(False, description=SIMULATE_HELP)


class VllmSettings(_GpuServerSettings):
    """vLLM (`vllm serve`), supervised as a child process."""

    kind: Literal["vllm"] = Field("vllm", description="vLLM, started by seekstack (`vllm serve`) unless `url` is set.")
    package: ClassVar[str | None] = "vllm"
    install: ClassVar[str] = "pip install 'seekstack[vllm]' on a machine with an NVIDIA GPU"
    pipeline_parallel: int = Field(1, ge=1, le=64, description="Pipeline stages (nodes) one replica spans.")
    expert_parallel: bool = Field(False, description="Spread MoE experts across the tensor/data-parallel GPUs (`--enable-expert-parallel`), as DeepSeek-V3/R1 wide-EP does.")
    gpu_memory_utilization: float = Field(0.90, gt=0.1, le=0.99, description="Share of each GPU's memory vLLM may take (weights, KV cache, activations).")
    prefix_caching: bool = Field(True, description="Reuse the KV cache of repeated prompt prefixes (`--enable-prefix-caching`).")


class SglangSettings(_GpuServerSettings):
    """SGLang (`python -m sglang.launch_server`), supervised as a child process."""

    kind: Literal["sglang"] = Field("sglang", description="SGLang, started by seekstack (`python -m sglang.launch_server`) unless `url` is set.")
    package: ClassVar[str | None] = "sglang"
    install: ClassVar[str] = "pip install 'seekstack[sglang]' on a machine with an NVIDIA GPU"
    expert_parallel: int = Field(1, ge=1, le=64, description="Expert-parallel size (`--ep-size`), for MoE models.")
    dp_attention: bool | None = Field(None, description="Data-parallel attention (`--enable-dp-attention`); default: on for DeepSeek models when data_parallel > 1, which SGLang recommends for MLA.")
    mem_fraction_static: float | None = Field(None, gt=0.1, le=0.99, description="Share of GPU memory for weights and KV cache (`--mem-fraction-static`); default: SGLang's own.")


class OpenAISettings(EngineSettings):
    """Any OpenAI-compatible server that seekstack does not start (a vLLM run by another team, a
    server on a GPU host, a cloud endpoint over a private link)."""

    kind: Literal["openai"] = Field("openai", description="An OpenAI-compatible server seekstack does not start.")
    url: str | None = Field(None, description="Base URL of the server, without /v1 (e.g. http://10.0.0.7:8000); or list several in `endpoints`.")
    upstream_model: str | None = Field(None, min_length=1, description="The model id the server knows this model by (default: the model's own name).")
    health_path: str = Field("/v1/models", pattern=r"^/", description="Path whose 200 means the server is up.")

    @model_validator(mode="after")
    def _needs_an_address(self) -> "OpenAISettings":
        if not self.addresses and self.discover is None:
            raise ValueError("set `url` (the server's base URL), `endpoints` or `discover` — seekstack does not start "
                             "this engine")
        return self


def base_url(url: str) -> str:
    if not url.startswith(("http://", "https://", "unix://")):
        raise ValueError(f"{url!r}: use http://, https:// or unix:// — the base URL of the server")
    return url.rstrip("/").removesuffix("/v1")


SETTINGS: dict[str, type[EngineSettings]] = {}


def register_settings(cls: type[EngineSettings]) -> type[EngineSettings]:
    SETTINGS[cls.model_fields["kind"].default] = cls
    return cls


for _builtin in (LlamaCppSettings, VllmSettings, SglangSettings, OpenAISettings):
    register_settings(_builtin)

# `engine: remote` (seekstack ≤ 0.1) is the openai engine.
ALIASES = {"remote": "openai"}


def settings_class(kind: str) -> type[EngineSettings]:
    """The settings class of an engine kind; plugins are looked for once, on the first unknown kind."""
    kind = ALIASES.get(kind, kind)
    if kind not in SETTINGS:
        from .registry import load_plugins

        load_plugins()
    if kind not in SETTINGS:
        raise ValueError(f"unknown engine {kind!r}; installed engines: {', '.join(sorted(SETTINGS))}")
    return SETTINGS[kind]


def parse_engine(value: Any) -> EngineSettings:
    """``"vllm"`` or ``{"kind": "vllm", ...}`` (or an instance) → the engine's settings.

    Raises ValueError with one line per problem, each naming the option."""
    if isinstance(value, EngineSettings):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict):
        raise ValueError("use an engine name (engine: vllm) or a mapping with `kind` and its options")
    kind = value.get("kind", "llamacpp")
    if not isinstance(kind, str):
        raise ValueError("engine.kind must be an engine name")
    cls = settings_class(kind)
    try:
        return cls.model_validate({**value, "kind": cls.model_fields["kind"].default})
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
                    for err in exc.errors()]
        raise ValueError("; ".join(problems)) from None
