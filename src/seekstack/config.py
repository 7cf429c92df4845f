"""Settings: one pydantic registry, loaded from ``seekstack.yaml`` plus ``SEEKSTACK_…`` env.

Every setting has a type, a default and help text (``Field(description=…)``);
``docs/configuration.md`` is generated from these models (``seekstack config docs``)
and a test keeps the two equal. Unknown keys are errors (``extra="forbid"``).

Env overrides use ``SEEKSTACK_<SECTION>__<FIELD>`` (double underscore between
levels), for example ``SEEKSTACK_SERVER__PORT=9000``; values are parsed as YAML
scalars/flow collections and then validated like the file.
"""

from __future__ import annotations

import ipaddress
import os
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, ValidationError, field_validator,
                      model_validator)

from .embedded import EMBEDDED_MODEL_ID, embedded_model_path
from .engines.settings import EngineSettings, LlamaCppSettings, parse_engine
from .errors import ConfigError
from .families import family_for

ENV_PREFIX = "SEEKSTACK_"
DEFAULT_CONFIG_NAME = "seekstack.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TLSConfig(_Section):
    cert: Path = Field(description="PEM certificate file served by the gateway.")
    key: Path = Field(description="PEM private key for `cert` (keep it 0600).")
    client_ca: Path | None = Field(None, description="PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS).")
    min_version: Literal["1.2", "1.3"] = Field("1.2", description="Oldest TLS version accepted; 1.3 is preferred whenever the client offers it.")


class SourceLimits(_Section):
    failures_per_minute: int = Field(60, ge=1, description="Requests refused before authentication (no key, a wrong key, an unknown route) a client address may have in a sliding minute; past it, its requests without a valid key get 429 with Retry-After (a valid key is still served).")
    audited_failures: int = Field(20, ge=1, description="Of those, how many a minute get an audit record each; the rest are counted into one `refusals` record per address, so a flood cannot fill the audit store.")
    requests_per_second: float | None = Field(None, gt=0, description="Requests per second a client address may send at all, checked before its key (429 past it). Off by default: quotas limit each key.")


class ServerConfig(_Section):
    host: str = Field("127.0.0.1", description="Address the gateway binds. Loopback by default; use 0.0.0.0 only behind auth and TLS.")
    port: int = Field(8800, ge=0, le=65535, description="TCP port of the gateway (0 picks a free one).")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest request body accepted; larger bodies get 413.")
    drain_timeout: float = Field(30.0, ge=0, le=3600, description="Seconds to let in-flight requests finish on SIGTERM/Ctrl-C before stopping engines.")
    tls: TLSConfig | None = Field(None, description="Serve HTTPS with this certificate and key.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Gateway log level. Logs never contain prompt text.")
    log_format: Literal["json", "text"] = Field("json", description="`json`: one JSON object per line (with request_id and trace_id), for log shippers; `text`: for reading in a terminal.")
    source_limits: SourceLimits = Field(default_factory=SourceLimits, description="Limits per client address, applied before authentication.")
    header_timeout: float = Field(10.0, gt=0, le=300, description="Seconds a client has to send a request's headers (from connecting, or from the request's first byte); then the connection is closed.")
    body_timeout: float = Field(30.0, gt=0, le=3600, description="Seconds the gateway waits for the next piece of a request body; then 408 and the connection is closed.")
    max_connections: int = Field(2048, ge=16, description="Open client connections at most; past it, new ones are closed at once.")
    trusted_proxies: list[str] = Field(default_factory=list, description="Addresses or networks (`10.0.0.0/8`) of reverse proxies in front of the gateway: only their `X-Forwarded-For` / `X-Forwarded-Proto` are believed, so the audit log records the real client. Empty (the default): those headers are ignored and the audit log records the connecting address, which no client can forge.")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (write e.g. 10.0.0.5 or 10.0.0.0/8)") from None
        return entries


class AuthConfig(_Section):
    enabled: bool = Field(True, description="Require an API key on every request except /healthz and /readyz. May be false only while server.host is a loopback address (local development).")
    admin_key_file: Path | None = Field(None, description="Where the first `serve` writes the bootstrap admin key (mode 0600); default `<state_dir>/admin.key`.")


class AuditConfig(_Section):
    dir: Path | None = Field(None, description="Directory of this gateway's audit chain and its keys; default `<state_dir>/audit`. Gateways that share a state_dir each need their own.")
    retention_days: int = Field(184, description="Days audit records are kept (at least 184: Chinese law requires six months of network logs).")
    capture_bodies: bool = Field(False, description="Also keep prompt and answer bodies (after PII policy), encrypted with AES-256-GCM.")
    bodies_days: int = Field(90, ge=1, description="Days captured bodies are kept.")
    important_bodies_days: int = Field(180, ge=1, description="Days bodies of requests marked `x-seekstack-important: true` are kept.")
    data_key_rotation_hours: float = Field(72, gt=0, description="A new body-encryption data key after this many hours; old ones stay to decrypt.")
    max_bytes: int | None = Field(10 * 2**30, ge=1 << 20, description="Size budget of the audit store (bytes the records take). At it, requests are refused (fail-closed) until retention or an operator frees room; the `SeekstackAuditStoreFilling` alert fires at 80 %. `null`: no budget.")

    @field_validator("retention_days")
    @classmethod
    def _six_months(cls, days: int) -> int:
        if days < 184:
            raise ValueError(f"{days} days is too short: audit metadata must be kept at least 184 days "
                             "(Chinese law requires six months of network logs)")
        return days


PiiMode = Literal["off", "detect", "mask", "tokenize"]


class PiiConfig(_Section):
    default: PiiMode = Field("detect", description="PII policy when nothing more specific applies: off, detect (audit the classes found), mask (irreversible), tokenize (reversible placeholders, restored in the answer).")
    teams: dict[str, PiiMode] = Field(default_factory=dict, description="Policy per team.")
    keys: dict[str, PiiMode] = Field(default_factory=dict, description="Policy per key id (wins over team).")
    models: dict[str, PiiMode] = Field(default_factory=dict, description="Policy per model (team and key win over it).")


class QuotaConfig(_Section):
    store: Literal["memory", "redis"] = Field("memory", description="Where rate-limit counters live: `memory` (one gateway process) or `redis` (exact across several gateways).")
    redis_url: str | None = Field(None, description="Redis URL for `store: redis`, e.g. `redis://10.0.0.5:6379/0` or a Unix socket path.")
    redis_sentinels: list[str] = Field(default_factory=list, description="Instead of `redis_url`: the Redis Sentinels (`host:port`) that watch the quota store's Redis and its replicas. The gateways ask them which server is the master and follow a failover to the replica they promote; until then, requests under a limit get 503. Counts of the last moments before a failover may be lost (replication is asynchronous).")
    redis_password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="The environment variable holding the password of the quota store's Redis (`requirepass`; with `redis_sentinels`, the password of the master and replicas they name), so that it stays out of this file. Never logged.")
    redis_sentinel_master: str = Field("mymaster", min_length=1, description="With `redis_sentinels`: the name the Sentinels monitor the quota store's Redis under (`sentinel monitor NAME …`).")
    concurrency_lease_s: float = Field(60.0, ge=3, le=3600, description="With `store: redis`: a request's slot under a `concurrent` limit is a lease its gateway renews while the request runs. A gateway that dies (or cannot reach Redis to release a slot) holds it at most this long.")


class StorageConfig(_Section):
    url: str | None = Field(None, description="The governance database (teams, users, keys, limits, usage): unset, SQLite in `state_dir` (one host); a PostgreSQL URL (`postgresql://seekstack@10.0.0.5/seekstack`) for gateways on several hosts. Keep the password out of this file: libpq reads `PGPASSWORD` or `~/.pgpass`. Each gateway's `state_dir` needs the same `pepper.key` (keys are stored as peppered hashes): a gateway with another, or none, is refused at start.")

    @field_validator("url")
    @classmethod
    def _postgres(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"{url.partition('://')[0] or url!r}: use a postgresql:// URL, or leave it unset for SQLite")
        return url


class ConsoleConfig(_Section):
    enabled: bool = Field(True, description="Serve the web console at `/console` (sign-in with an API key; every page and action goes through the same permissions, quotas and audit as the API).")
    idle_timeout: float = Field(1800, ge=60, le=86400, description="Seconds a console session may go unused before it ends.")
    max_age: float = Field(43200, ge=60, le=30 * 86400, description="Seconds a console session lasts at most after sign-in, however it is used.")
    password_failures: int = Field(10, ge=1, le=1000, description="Failed password sign-ins a user name may have within `password_window` (on every gateway together); past them, sign-ins with that name are refused (429) until the oldest failures age out. Keys still work.")
    password_window: float = Field(900, ge=60, le=86400, description="Seconds over which failed password sign-ins are counted per user name.")


class RoleConfig(_Section):
    permissions: list[str] = Field(description="Permission patterns this role grants, e.g. `inference:*`, `usage:read`.")
    resources: list[str] = Field(["*"], description="Model patterns the role may use, e.g. `deepseek-r1*`.")
    scope: Literal["team", "global"] = Field("team", description="`team`: manages only its own team's objects; `global`: every team's.")
    description: str = Field("custom role", description="What the role is for.")


class TracingConfig(_Section):
    enabled: bool = Field(False, description="Export OpenTelemetry spans for each request stage (authenticate, authorize, quota, pii, route, engine TTFT, stream).")
    endpoint: str = Field("http://127.0.0.1:4318/v1/traces", description="OTLP/HTTP (protobuf) traces endpoint of your collector.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers sent with each export, e.g. a collector token.")
    service_name: str = Field("seekstack", description="`service.name` resource attribute of the spans.")
    sample_ratio: float = Field(1.0, ge=0, le=1, description="Fraction of new traces recorded (a caller's `traceparent` sampling decision is followed).")


class AlertThresholds(_Section):
    gpu_utilization_warning: float = Field(0.85, gt=0, le=1, description="GPU utilisation (ratio) that raises a warning after 5 minutes.")
    gpu_utilization_critical: float = Field(0.95, gt=0, le=1, description="GPU utilisation (ratio) that is critical after 5 minutes.")
    gpu_memory_warning: float = Field(0.90, gt=0, le=1, description="GPU memory used (ratio) that raises a warning.")
    gpu_memory_critical: float = Field(0.98, gt=0, le=1, description="GPU memory used (ratio) that is critical.")
    token_latency_warning_ms: float = Field(50, gt=0, description="p95 time per output token (ms) that raises a warning.")
    token_latency_critical_ms: float = Field(100, gt=0, description="p95 time per output token (ms) that is critical.")
    ttft_p99_ms: float = Field(500, gt=0, description="p99 time to first token (ms) above which an alert fires.")
    sustained_utilization: float = Field(0.90, gt=0, le=1, description="Slot utilisation (busy / total engine slots) that fires when held for 15 minutes.")
    scale_up_utilization: float = Field(0.85, gt=0, le=1, description="Average slot utilisation over 5 minutes that asks for more replicas.")
    scale_down_utilization: float = Field(0.30, ge=0, lt=1, description="Average slot utilisation over 30 minutes under which replicas could be removed.")
    error_ratio: float = Field(0.05, gt=0, le=1, description="Share of requests answered with 5xx over 5 minutes that fires an alert.")
    replica_down_for: str = Field("1m", pattern=r"^[0-9]+[smh]$", description="How long a replica must be down before the alert fires.")
    certificate_expiry_days: float = Field(14, gt=0, description="Days before the TLS certificate expires that an alert fires (critical at a fifth of it).")
    model_turns_per_hour: int = Field(12, ge=1, description="Models unloaded to make room for another (models with a keep_alive taking turns) per hour above which `SeekstackModelsTakingTurnsOften` fires: requests keep waiting for loads.")


class ObservabilityConfig(_Section):
    metrics: bool = Field(True, description="Serve Prometheus metrics at /metrics (needs the `metrics:read` permission).")
    tracing: TracingConfig = Field(default_factory=TracingConfig, description="OpenTelemetry tracing (off by default).")
    alerts: AlertThresholds = Field(default_factory=AlertThresholds, description="Thresholds of the rule file `seekstack deploy alerts` writes.")


class StoreConfig(_Section):
    path: Path | None = Field(None, description="Where models are stored (blobs, manifests, snapshots); default `<state_dir>/models`.")
    require_signature: bool = Field(False, description="Refuse to serve any model that is not a store model signed by one of `trusted_keys`.")
    trusted_keys: list[Path] = Field(default_factory=list, description="Public keys (Ed25519 .pub) or HMAC key files whose signatures are trusted.")
    hf_endpoint: str = Field("https://huggingface.co", description="Hugging Face hub or mirror for `hf:` pulls (e.g. https://hf-mirror.com).")
    modelscope_endpoint: str = Field("https://modelscope.cn", description="ModelScope hub for `modelscope:` pulls.")
    allow_pickle: bool = Field(False, description="Accept pickle weights (.bin, .pt, .pth, .pkl, .ckpt), which can run code when loaded.")


PriorityClass = Literal["interactive", "batch"]


class PriorityConfig(_Section):
    default: PriorityClass = Field("interactive", description="Priority class of a request when nothing more specific applies. In a model's queue, `interactive` requests go before `batch` ones.")
    teams: dict[str, PriorityClass] = Field(default_factory=dict, description="Priority class per team.")
    keys: dict[str, PriorityClass] = Field(default_factory=dict, description="Priority class per key id (wins over team).")


class SchedulerConfig(_Section):
    policy: Literal["round-robin", "least-outstanding", "least-load", "prefix-affinity"] = Field("least-outstanding", description="How a request picks among a deployment's healthy endpoints: `round-robin`; `least-outstanding` (fewest in flight from this gateway); `least-load` (the engines' own queue and KV-cache use); `prefix-affinity` (the same prompt prefix or `X-Session-Id` to the same endpoint, whose KV cache holds it, with bounded load).")
    prefix_bytes: int = Field(512, ge=16, le=1 << 20, description="`prefix-affinity`: how much of the start of a prompt decides its endpoint.")
    priorities: PriorityConfig = Field(default_factory=PriorityConfig, description="Priority classes per key and team, for the models' queues.")
    timeout: float = Field(600.0, gt=0, description="Seconds an engine may take to answer one request (read timeout between chunks).")
    retries: int = Field(2, ge=0, le=5, description="Times a request goes to another endpoint when its engine fails before the client got anything (a refused or broken connection, a 5xx).")
    resume: bool = Field(True, description="Resume a stream whose engine broke mid-way on another endpoint, so that the client sees one stream (docs/operations.md lists what is resumed).")


class SupervisorConfig(_Section):
    heartbeat_interval: float = Field(0.25, gt=0, le=0.5, description="Seconds between health checks (and load readings) of each endpoint (at most 0.5).")
    health_timeout: float = Field(0.25, gt=0, le=5, description="Seconds an engine has to answer a health check. Two checks in a row without an answer eject it (the second is sent at once).")
    eject_for: float = Field(1.0, gt=0, description="Seconds an ejected endpoint stays out of service the first time; doubled on each ejection in a row, up to `eject_max`. Then a passing health check lets one request at a time try it (half-open); its success brings it back.")
    eject_max: float = Field(30.0, gt=0, description="Longest time an endpoint stays ejected before it is tried again.")
    startup_timeout: float = Field(300.0, gt=0, description="Seconds a replica may take to load its model before it counts as failed.")
    backoff_initial: float = Field(0.5, gt=0, description="First restart delay after a crash, doubled after each further crash.")
    backoff_max: float = Field(30.0, gt=0, description="Longest restart delay.")
    stable_after: float = Field(60.0, gt=0, description="Seconds of health after which the restart delay resets.")
    engine_nice: int = Field(5, ge=0, le=19, description="CPU niceness of engine processes. Engines are throughput work; a positive value lets the gateway (auth, streaming, health probes) run first when engines keep every core busy.")
    memory_budget_gb: float | None = Field(None, gt=0, description="Memory engines may use in all (GB), checked before loading (admission control); default: the memory available at start.")
    discover_every: float = Field(5.0, ge=0.2, le=300, description="Seconds between DNS lookups of each `engine.discover` name (engines added and drained as its addresses change).")
    dns_servers: list[str] = Field(default_factory=list, description="DNS servers (`address` or `address:port`) asked for `engine.discover` names; default: the system's (`/etc/resolv.conf`; `/etc/hosts` is not read).")
    engine_transport: Literal["unix", "tcp"] = Field("unix", description="How the gateway reaches engines: Unix sockets in a private 0700 directory (no local user can bypass the gateway), or TCP on 127.0.0.1.")


class AutoscaleConfig(_Section):
    min_replicas: int = Field(1, ge=1, le=64, description="Fewest replicas.")
    max_replicas: int = Field(4, ge=1, le=64, description="Most replicas; fewer when the memory plan says no more fit.")
    scale_up_at: float = Field(0.85, gt=0, le=2, description="Add a replica when the average utilisation (saturation: slots in use with the queue, or KV-cache use) over `window` is above this.")
    scale_down_at: float = Field(0.30, ge=0, lt=2, description="Remove one (it drains first) when the average over a full `window` is below this.")
    window: float = Field(300.0, gt=0, le=86400, description="Seconds the utilisation is averaged over.")
    up_cooldown: float = Field(60.0, ge=0, description="Seconds after any change before a replica is added.")
    down_cooldown: float = Field(300.0, ge=0, description="Seconds after any change before a replica is removed.")
    sample_every: float = Field(5.0, gt=0, le=300, description="Seconds between utilisation samples.")

    @model_validator(mode="after")
    def _ordered(self) -> "AutoscaleConfig":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is more than max_replicas ({self.max_replicas})")
        if self.scale_down_at >= self.scale_up_at:
            raise ValueError(f"scale_down_at ({self.scale_down_at}) must be below scale_up_at ({self.scale_up_at})")
        return self


class QueueConfig(_Section):
    concurrency: int | None = Field(None, ge=1, le=65536, description="Requests one endpoint runs at once; more wait in the gateway's queue, in priority order. Default: the engine's `slots`; no limit for an `openai` server (its capacity is unknown).")
    max_waiting: int = Field(128, ge=0, le=1_000_000, description="Requests that may wait for this model at most; past it, 429 with Retry-After at once.")
    max_wait: float = Field(60.0, gt=0, le=3600, description="Seconds a request may wait in the queue; then 429 with Retry-After.")


class SamplingDefaults(_Section):
    temperature: float | None = Field(None, ge=0, le=2, description="Used when the client sends no temperature.")
    top_p: float | None = Field(None, gt=0, le=1, description="Used when the client sends no top_p.")
    top_k: int | None = Field(None, ge=0, description="Used when the client sends no top_k.")
    max_tokens: int | None = Field(None, ge=1, description="Used when the client sends no max_tokens.")


FallbackReason = Literal["unavailable", "overloaded", "context_length"]  # traffic/fallbacks.py: REASONS


class ModelConfig(_Section):
    name: str = Field(description="Model id clients send in `model`.", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
    path: Path | None = Field(None, description="Local model file (GGUF for llamacpp) or directory.")
    source: str | None = Field(None, description="Where the model comes from when `path` is not set: `embedded` (the bundled SmolLM2-135M).")
    store: str | None = Field(None, description="A model in the store, `NAME` (its current version) or `NAME@VERSION`; verified at every load (see `store`).")
    engine: SerializeAsAny[EngineSettings] = Field(default_factory=LlamaCppSettings, description="Engine that serves this model: `llamacpp` (default), `vllm`, `sglang`, `openai` (an OpenAI-compatible server seekstack does not start), or a plugin's; a name, or a mapping with `kind` and that engine's options (docs/engines.md).")
    quantization: str | None = Field(None, description="Quantization label (e.g. Q4_K_M, FP8); informational for GGUF.")
    device: Literal["auto", "cpu", "gpu"] = Field("auto", description="Where to run: `cpu` forces gpu_layers 0.")
    replicas: int = Field(1, ge=1, le=64, description="Engine processes serving this model.")
    context: int = Field(4096, ge=128, le=1_048_576, description="Context length of one request (prompt + completion), in tokens. When unset, `serve` derives it for llama.cpp models from the memory plan: the model's trained context (at most 4096), halved until every model fits.")
    slots: int = Field(4, ge=1, le=256, description="Parallel sequences per replica (continuous batching); engine context = context × slots. When unset, `serve` starts from 4 and lowers it only if the plan needs to.")
    threads: int | None = Field(None, ge=1, le=512, description="CPU threads per replica (default: all cores).")
    gpu_layers: int | None = Field(None, ge=-1, description="Layers offloaded to GPU (-1 all, 0 none; default: all when device allows).")
    chat_template: str | None = Field(None, description="Chat template name or Jinja text overriding the model's own.")
    prompt_cache_mib: int = Field(256, ge=0, le=1_048_576, description="Host memory (MiB) llama.cpp may keep for the KV state of earlier prompts, to answer a repeated prefix without recomputing it; counted by the planner and admission. 0 turns it off. (llama.cpp's own default, 8 GiB, grows an engine by the KV of every distinct prompt until then.)")
    rope_scaling: Literal["yarn", "linear"] | None = Field(None, description="Stretch the model's positions past its trained context: `yarn` (what DeepSeek and Qwen publish for long context) or `linear`, by `context` ÷ the trained context. Without it, a `context` longer than the model was trained for is refused.")
    embeddings: bool = Field(False, description="Run as an embedding model: serves /v1/embeddings (mean pooling) and refuses chat/completions, since llama.cpp runs embedding models in a dedicated mode. Add a second entry for the same file to chat with it.")
    rerank: bool = Field(False, description="Run as a reranker (a cross-encoder such as bge-reranker-v2-m3): serves /v1/rerank, scoring each document against a query, and refuses chat, completions and embeddings. For retrieval stacks (Dify, RAGFlow) beside an embedding model.")
    reasoning: Literal["auto", "none", "deepseek_r1"] = Field("auto", description="Reasoning format; `auto` takes it from the model family (DeepSeek-R1 → deepseek_r1).")
    reasoning_parser: Literal["auto", "engine", "gateway"] = Field("auto", description="Who splits reasoning: the engine's native parser (preferred when it has one) or the gateway.")
    defaults: SamplingDefaults = Field(default_factory=SamplingDefaults, description="Sampling used when the client sets none; family defaults fill the rest.")
    queue: QueueConfig = Field(default_factory=QueueConfig, description="The bounded queue in front of this model's endpoints (overload protection).")
    autoscale: AutoscaleConfig | None = Field(None, description="Add and remove replicas with the load (engines seekstack starts only); `replicas` is the count to start with.")
    keep_alive: float | None = Field(None, ge=1, le=604800, description="Seconds the model stays loaded with no request in flight or waiting; then its replicas stop (memory freed, state `unloaded`) and the next request loads them again, waiting up to `supervisor.startup_timeout` for it (Ollama's keep_alive; engines seekstack starts, one gateway process). Models with a keep_alive need not all fit the memory plan at once: they take turns, a load unloading the least recently used idle one. Unset: always loaded.")

    fallbacks: list[str] = Field([], max_length=8, description="Other models of this config that answer in its place, tried in order, when it cannot take a request (`fallback_on`) and before the client got anything: the answer's `model` names the model that gave it, the header `x-seekstack-fallback-from` the one asked for, and the audit record both. Only models the caller's key may use are tried; a fallback's own fallbacks are not. An embedding model falls back to embedding models only, a reranker to rerankers.")
    fallback_on: list[FallbackReason] = Field(["unavailable", "overloaded"], min_length=1, description="When `fallbacks` are tried: `unavailable` (no endpoint takes requests now — down, ejected, unloaded — or every one failed before answering: a 503), `overloaded` (the model's queue is full or the wait too long: a 429), `context_length` (the prompt and max_tokens do not fit this model's context: a 400; list a fallback with a longer one).")

    _store_path: Path | None = PrivateAttr(None)  # set by seekstack.store.resolve_models

    # Checks of one field are field validators, so that they are reported together with every
    # other field's problems; the model validator below runs only when all fields are valid.
    @field_validator("source")
    @classmethod
    def _known_source(cls, source: str | None) -> str | None:
        if source is not None and source != "embedded":
            raise ValueError(f"unknown source {source!r}; use `embedded` or set `path`")
        return source

    @model_validator(mode="before")
    @classmethod
    def _legacy_remote(cls, data: Any) -> Any:
        """``engine: remote`` with a top-level ``url`` (seekstack ≤ 0.1) is ``engine: {kind: openai, url: …}``."""
        if isinstance(data, dict) and "url" in data:
            data = dict(data)
            url = data.pop("url")
            engine = data.get("engine", "openai")
            engine = {"kind": engine} if isinstance(engine, str) else dict(engine)
            engine.setdefault("url", url)
            data["engine"] = engine
        return data

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, value: Any) -> EngineSettings:
        return parse_engine(value)

    @model_validator(mode="after")
    def _needs_a_location(self) -> "ModelConfig":
        if self.embeddings and self.rerank:
            raise ValueError("set one of `embeddings` or `rerank`: a model runs in one mode (add a second entry for the "
                             "same file)")
        if self.autoscale is not None:
            if not self.engine.launched:
                raise ValueError("autoscale: only engines seekstack starts can be scaled (not `url` / `endpoints` / `discover`)")
            if not self.autoscale.min_replicas <= self.replicas <= self.autoscale.max_replicas:
                raise ValueError(f"replicas ({self.replicas}) must be between autoscale.min_replicas "
                                 f"({self.autoscale.min_replicas}) and max_replicas ({self.autoscale.max_replicas})")
        if self.keep_alive is not None:
            if not self.engine.launched:
                raise ValueError("keep_alive: only engines seekstack starts can be unloaded (not `url` / `endpoints` / "
                                 "`discover`)")
            if self.autoscale is not None:
                raise ValueError("keep_alive and autoscale: set one — autoscale keeps min_replicas loaded; keep_alive "
                                 "unloads every replica when idle")
        if not self.engine.launched:
            return self
        if self.store is not None:
            if self.path is not None or self.source is not None:
                raise ValueError("set one of `store`, `path` or `source`, not several")
            return self
        if self.path is None and self.source is None:
            raise ValueError("set `path` (a local model file), `store: NAME[@VERSION]` or `source: embedded`")
        return self

    def resolved_path(self) -> Path:
        if self.path is not None:
            return self.path.expanduser()
        if self.store is not None:  # serve and doctor resolve store models first (seekstack.store.resolve_models)
            if self._store_path is not None:
                return self._store_path
            raise ConfigError(f"model {self.name}: the store model {self.store!r} is not resolved",
                              fix="run it through `seekstack serve`, which resolves and verifies store models")
        return embedded_model_path()

    @property
    def concurrency(self) -> int | None:
        """Requests one endpoint runs at once before more wait in the gateway's queue (None: no
        limit): ``queue.concurrency``, else the engine's slots — except for an OpenAI-compatible
        server seekstack does not know the capacity of."""
        if self.queue.concurrency is not None or self.engine.kind == "openai":
            return self.queue.concurrency
        return self.slots

    @property
    def task(self) -> Literal["chat", "embeddings", "rerank"]:
        """What the model serves: chat and completions, embeddings, or rerank."""
        return "embeddings" if self.embeddings else "rerank" if self.rerank else "chat"

    @property
    def pooled(self) -> bool:
        """An embedding model or a reranker: one output per input, computed in one batch."""
        return self.embeddings or self.rerank

    def reasoning_format(self) -> str:
        if self.reasoning != "auto":
            return self.reasoning
        return family_for(self.name, self.path.name if self.path else None).reasoning

    def sampling_defaults(self) -> dict[str, Any]:
        family = family_for(self.name, self.path.name if self.path else None)
        merged = dict(family.sampling)
        merged.update(self.defaults.model_dump(exclude_none=True))
        return merged


def default_models() -> list[ModelConfig]:
    return [ModelConfig(name=EMBEDDED_MODEL_ID, source="embedded")]


class Settings(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig, description="The gateway's listener.")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig, description="Routing among replicas.")
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig, description="Engine process supervision.")
    models: list[ModelConfig] = Field(default_factory=default_models, description="Models to serve; default: the embedded SmolLM2-135M.")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API keys.")
    audit: AuditConfig = Field(default_factory=AuditConfig, description="The tamper-evident audit log.")
    pii: PiiConfig = Field(default_factory=PiiConfig, description="PII detection and masking in prompts and answers.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Where governance state lives: SQLite (default) or PostgreSQL.")
    quotas: QuotaConfig = Field(default_factory=QuotaConfig, description="Rate limits and token budgets (the limits themselves are set per key, user and team with `seekstack limits`).")
    roles: dict[str, RoleConfig] = Field(default_factory=dict, description="Custom roles beside the six built-in ones.")
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig, description="Metrics, tracing and alert thresholds.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="The model store and its trust policy.")
    console: ConsoleConfig = Field(default_factory=ConsoleConfig, description="The web console, in Chinese and English.")
    state_dir: Path = Field(Path("~/.seekstack"), description="Where seekstack keeps logs and state.")

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        if not models:
            raise ValueError("list at least one model")
        by_name = {m.name: m for m in models}
        for model in models:
            for name in model.fallbacks:
                other = by_name.get(name)
                if name == model.name or model.fallbacks.count(name) > 1:
                    raise ValueError(f"model {model.name}: fallbacks must name other models, each once ({name!r})")
                if other is None:
                    raise ValueError(f"model {model.name}: fallback {name!r} is not a model of this config; "
                                     f"models: {', '.join(by_name)}")
                if other.task != model.task:
                    kind = {"chat": "a chat model", "embeddings": "an embedding model", "rerank": "a reranker"}[model.task]
                    raise ValueError(f"model {model.name}: fallback {name!r} must be {kind} too: it answers the same requests")
        return models

    @property
    def state_path(self) -> Path:
        """``state_dir`` with ``~`` expanded."""
        return Path(self.state_dir).expanduser()

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)


# ---------------------------------------------------------------- loading

def find_config_file(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    from_env = os.environ.get(ENV_PREFIX + "CONFIG")
    if from_env:
        return Path(from_env)
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist", fix="check the path, or run without --config to serve the embedded model") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}", fix="check the file's permissions") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}", fix="fix the YAML syntax (indentation, colons, quotes)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of sections (server:, models:, …)", fix="see docs/configuration.md for the layout")
    return data


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG" or key.startswith(ENV_PREFIX + "_"):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX):].split("__")]
        if parts[0] not in Settings.model_fields:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def config_data(path: Path | None, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The config as written (``path``'s file, or nothing), with the ``SEEKSTACK_*`` overrides applied."""
    return _deep_merge(read_config_file(path) if path is not None else {}, env_overrides(environ))


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: the field, what is wrong, and the fix."""
    lines = []
    for err in exc.errors():
        loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc or '(top level)'}: {msg} — {_fix_for(err)}")
    return lines


def _fix_for(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "remove this key or check its spelling (see docs/configuration.md)"
    if kind == "missing":
        return "add this field"
    if kind.startswith(("int_", "float_")):
        return "use a number"
    if kind.startswith("bool"):
        return "use true or false"
    if kind in ("literal_error", "enum"):
        return "use one of the values listed"
    if kind.startswith(("greater", "less")):
        return "use a value inside the allowed range"
    if kind == "string_pattern_mismatch":
        return "use letters, digits and . _ : / @ - only"
    return "see docs/configuration.md"


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load and validate settings; raise ConfigError listing every problem at once."""
    config_file = find_config_file(path)
    data = read_config_file(config_file) if config_file else {}
    data = _deep_merge(data, env_overrides(environ))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        where = str(config_file) if config_file else "settings"
        raise ConfigError(f"{where} has {len(problems)} problem(s):\n  " + "\n  ".join(problems), fix="fix the fields named above") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` (an IPv6 host in brackets) as a pair, or None if it is not one (a Sentinel, a DNS server)."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def dns_server(text: str) -> tuple[str, int] | None:
    """A DNS server as (IP address, port): ``10.96.0.10``, ``10.96.0.10:5353``, ``[fd00::a]:53``."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(text.strip("[]"))), 53
    except ValueError:
        pass
    pair = host_port(text)
    if pair is None:
        return None
    try:
        return str(ipaddress.ip_address(pair[0])), pair[1]
    except ValueError:
        return None


def check_config(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Every problem in a config file at once (``seekstack config check``): the schema's, and
    the checks of :func:`check_settings` on every part that is valid on its own — a bad port
    does not hide a missing model file. Empty means OK."""
    from .store import store_problems  # the store imports this module

    data = config_data(path, environ)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        failed = {err["loc"][0] for err in exc.errors() if err["loc"]}
    else:
        return store_problems(settings) + check_settings(settings)
    models = data.get("models")
    entries = []  # (index in the file, entry) of each model that is valid on its own
    for i, raw in enumerate(models if isinstance(models, list) else []):
        try:
            entries.append((i, ModelConfig.model_validate(raw)))
        except ValidationError:
            pass  # reported above
    try:
        rest = Settings.model_validate({key: value for key, value in data.items() if key not in failed and key != "models"})
    except ValidationError:
        return problems  # a combination of sections is wrong: reported above
    if entries:
        problems += store_problems(rest.model_copy(update={"models": [model for _, model in entries]}))
    return problems + [p for i, model in entries for p in check_model(i, model)] + check_settings(rest, models=False)


def check_model(index: int, model: ModelConfig) -> list[str]:
    """Problems of one model entry that types alone cannot see (its file, its engine and device)."""
    from .engines.registry import engine_kind, missing_package

    where = f"models[{index}] ({model.name})"
    kind = engine_kind(model.engine.kind)
    missing = missing_package(model.engine)
    problems = [f"{where}.engine: {missing}"] if missing else []
    if kind.needs_gpu and model.device == "cpu" and not model.engine.simulated:
        problems.append(f"{where}.device: {kind.name} needs a GPU — use engine llamacpp for CPU")
    if not model.engine.launched:
        from .engines.keys import engine_tls, read_api_key

        try:
            read_api_key(model.engine)
        except ConfigError as exc:
            problems.append(f"{where}.{exc.message} — {exc.fix}")
        tls_files = [name for name in ("ca_file", "cert_file", "key_file") if getattr(model.engine, name) is not None]
        if tls_files and not any(a.startswith("https://") for a in [*model.engine.addresses, model.engine.discover or ""]):
            problems.append(f"{where}.engine.{tls_files[0]}: only engines at https:// addresses speak TLS "
                            f"— use https:// in url / endpoints, or remove {', '.join(tls_files)}")
        elif tls_files:
            try:
                engine_tls(model.engine)
            except ConfigError as exc:
                problems.append(f"{where}.{exc.message} — {exc.fix}")
        return problems
    if model.store is not None and model._store_path is None:
        return problems  # a store model the store did not resolve: its problem is the store's to report
    if model.engine.simulated:
        return problems  # `seekstack sim` stands in: it reads no weights
    try:
        path = model.resolved_path()
    except ConfigError as exc:
        return problems + [f"{where}: {exc.message} — {exc.fix}"]
    if not path.exists():
        problems.append(f"{where}.path: {path} does not exist — point it at a model file")
    elif model.engine.kind == "llamacpp" and path.is_file() and path.suffix.lower() != ".gguf":
        problems.append(f"{where}.path: llamacpp serves GGUF files, got {path.name} — convert to GGUF or pick engine vllm/sglang")
    trained = trained_context(model, path) if not problems else None
    if trained is not None and model.context > trained and model.rope_scaling is None:
        problems.append(f"{where}.context: {model.context} is longer than the {trained} tokens the model was trained "
                        f"for — lower it, or set rope_scaling: yarn to stretch the model's positions")
    return problems


def trained_context(model: ModelConfig, path: Path) -> int | None:
    """The context the model was trained for, from its GGUF header or config.json; None when unknown."""
    from .planner.catalog import spec_from_gguf
    from .planner.safetensors import spec_from_hf_dir

    try:
        if path.is_file() and path.suffix.lower() == ".gguf":
            return spec_from_gguf(path).max_context
        if path.is_dir() and (path / "config.json").exists():
            return spec_from_hf_dir(path).max_context
    except Exception:  # an unreadable header is reported where the file is read; nothing to add here
        return None
    return None


def check_settings(settings: Settings, models: bool = True) -> list[str]:
    """Problems that types alone cannot see (files, combinations). Empty means OK.
    ``models=False``: only the other sections."""
    problems = []
    if models:
        for i, model in enumerate(settings.models):
            problems += check_model(i, model)
    if not settings.auth.enabled and not is_loopback(settings.server.host):
        problems.append(f"auth.enabled: false is allowed only on a loopback address, but server.host is "
                        f"{settings.server.host} — turn auth on, or bind 127.0.0.1")
    from .governance.policy import BUILTIN_ROLES, PERMISSIONS, Role, mixed_duties

    for name, role in settings.roles.items():
        if name in BUILTIN_ROLES:
            problems.append(f"roles.{name}: is a built-in role — pick another name")
        mixed = mixed_duties(Role(name, tuple(role.permissions), tuple(role.resources), role.scope))
        if mixed:
            problems.append(f"roles.{name}: {mixed} — the system, security and audit duties stay apart; split it into two roles")
        for pattern in role.permissions:
            if not any(fnmatchcase(p, pattern) for p in PERMISSIONS):
                problems.append(f"roles.{name}.permissions: {pattern!r} matches no permission — "
                                f"use one of {', '.join(PERMISSIONS)} (wildcards allowed)")
    q = settings.quotas
    if q.store == "redis" and not q.redis_url and not q.redis_sentinels:
        problems.append("quotas.redis_url: required with quotas.store: redis — e.g. redis://127.0.0.1:6379/0 "
                        "(or quotas.redis_sentinels)")
    if q.redis_url and q.redis_sentinels:
        problems.append("quotas.redis_sentinels: set it or quotas.redis_url, not both — the Sentinels name the master")
    if q.redis_password_env and not os.environ.get(q.redis_password_env):
        problems.append(f"quotas.redis_password_env: the environment variable {q.redis_password_env} is not set — "
                        f"export {q.redis_password_env}=… before starting seekstack")
    for server in settings.supervisor.dns_servers:
        if not dns_server(server):
            problems.append(f"supervisor.dns_servers: {server!r} is not an IP address (with an optional :port) — "
                            "e.g. 10.96.0.10 or 127.0.0.1:5353")
    for address in q.redis_sentinels:
        if not host_port(address):
            problems.append(f"quotas.redis_sentinels: {address!r} is not host:port — e.g. 10.0.0.5:26379")
    tls = settings.server.tls
    if tls is not None:
        for label, file in (("cert", tls.cert), ("key", tls.key), ("client_ca", tls.client_ca)):
            if file is not None and not Path(file).expanduser().is_file():
                problems.append(f"server.tls.{label}: {file} does not exist — point it at a PEM file")
    return problems


# ---------------------------------------------------------------- reference docs

def settings_reference() -> str:
    """Markdown reference of every setting, generated from the registry above."""
    lines = ["# Configuration reference", "",
             "Generated from `seekstack/config.py` by `seekstack config docs`; a test keeps it current.", "",
             "Settings come from `seekstack.yaml` (`--config FILE`, `$SEEKSTACK_CONFIG`, or `./seekstack.yaml`),",
             "then `SEEKSTACK_<SECTION>__<FIELD>` environment variables (e.g. `SEEKSTACK_SERVER__PORT=9000`).",
             "Unknown keys are errors. `seekstack config check FILE` reports every problem at once.", ""]
    sections = [("(top level)", Settings, "")] + [
        (name, field.annotation if name != "models" else ModelConfig, name)
        for name, field in Settings.model_fields.items()
        if name == "models" or (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel))]
    from .engines.settings import LlamaCppSettings, OpenAISettings, SglangSettings, VllmSettings

    sections += [(f"models[].engine, kind: {cls.model_fields['kind'].default}", cls, "models[].engine")
                 for cls in (LlamaCppSettings, VllmSettings, SglangSettings, OpenAISettings)]
    sections += [("server.tls", TLSConfig, "server.tls"), ("models[].defaults", SamplingDefaults, "models[].defaults"),
                 ("roles.<name>", RoleConfig, "roles.<name>"), ("observability.tracing", TracingConfig, "observability.tracing"),
                 ("observability.alerts", AlertThresholds, "observability.alerts")]
    for title, model, prefix in sections:
        lines += [f"## `{title}`", "", "| setting | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            key = f"{prefix}.{name}" if prefix and prefix != "models" else (f"models[].{name}" if prefix == "models" else name)
            default = "required" if field.is_required() else _show_default(field)
            lines.append(f"| `{key}` | {_type_name(field.annotation)} | {default} | {field.description or ''} |")
        lines.append("")
    return "\n".join(lines)


def _show_default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section)"
        if isinstance(value, list):
            return "embedded model" if value else "[]"
        return f"`{value}`"
    return f"`{field.default}`" if field.default is not None else "unset"


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    text = text or str(annotation).replace("typing.", "").replace("pathlib.", "").replace("seekstack.config.", "")
    return text.replace("|", "or")
