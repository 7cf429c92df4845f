"""The model, quantization and hardware catalogs (``models.yaml``, ``hardware.yaml``), as data.

A :class:`ModelSpec` is the shape the planner needs; it comes from the catalog, or from a
local GGUF file's header (:func:`spec_from_gguf`), whose tensor bytes are then exact.
"""

from __future__ import annotations

import difflib

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidRequestError
from .gguf import read_header

HERE = Path(__file__).parent
GB = 1e9


@dataclass(frozen=True)
class ModelSpec:
    name: str
    params_b: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    attention: str = "gqa"                 # gqa | mla
    active_params_b: float | None = None   # MoE: parameters read per token
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    vocab: int = 152064
    max_context: int = 131072
    native: str = "bf16"
    family: str = ""
    sizes_gb: dict[str, float] = field(default_factory=dict)
    file_bytes: int | None = None          # a local file: its exact tensor bytes
    file_quant: str | None = None

    @property
    def active_b(self) -> float:
        return self.active_params_b or self.params_b

    @property
    def moe(self) -> bool:
        return self.active_params_b is not None and self.active_params_b < self.params_b


@dataclass(frozen=True)
class Quant:
    name: str
    bpw: float
    quality: str


@dataclass(frozen=True)
class Accelerator:
    name: str
    memory_gb: float
    bandwidth_gbs: float
    bf16_tflops: float
    power_w: float
    price_usd: float
    source: str
    vendor: str = "cpu"
    fp8_tflops: float | None = None
    int8_tops: float | None = None
    interconnect: str = ""
    cores: int | None = None
    cloud_usd_per_hour: float | None = None


@functools.cache
def _models() -> dict[str, Any]:
    return yaml.safe_load((HERE / "models.yaml").read_text(encoding="utf-8"))


@functools.cache
def _hardware() -> dict[str, Any]:
    return yaml.safe_load((HERE / "hardware.yaml").read_text(encoding="utf-8"))


def model_names() -> list[str]:
    return list(_models()["models"])


def catalog_model(name: str) -> ModelSpec:
    models = _models()["models"]
    key = name.lower().split(":")[0]
    for canonical, entry in models.items():
        if key == canonical or key in entry.get("aliases", []):
            fields = {k: v for k, v in entry.items() if k not in ("aliases", "experts", "engine", "sampling", "sources")}
            return ModelSpec(name=canonical, **fields)
    known = [*models, *(a for entry in models.values() for a in entry.get("aliases", []))]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise InvalidRequestError(f"{name!r} is not in the model catalog",
                              fix=f"{hint}the catalog has {', '.join(models)}; or give a path to a .gguf file")


def catalog_entry(name: str) -> tuple[str, dict[str, Any]]:
    """(canonical name, raw entry) — engine, sampling and sources included."""
    spec = catalog_model(name)
    return spec.name, _models()["models"][spec.name]


def catalog_source(ref: str) -> tuple[str, str]:
    """``deepseek-r1-distill-qwen:7b-q4_k_m`` or ``deepseek-r1-distill-qwen-7b:q4_k_m`` →
    (a pull source such as ``hf:ORG/REPO:GLOB``, a store name)."""
    left, _, right = ref.partition(":")
    size, _, quant_name = right.rpartition("-")
    candidates = [(f"{left}-{size}", quant_name)] if size else []
    candidates.append((left, right))
    for model, q in candidates:
        try:
            canonical, entry = catalog_entry(model)
        except InvalidRequestError:
            continue
        sources = entry.get("sources", {})
        if q.lower() in sources:
            return sources[q.lower()], f"{canonical}-{q.lower()}"
        raise InvalidRequestError(f"the catalog has no {q!r} release of {canonical}",
                                  fix=f"use one of: {', '.join(f'{canonical}:{k}' for k in sources)}")
    raise InvalidRequestError(f"{ref!r} is not in the model catalog", fix="see `seekstack models catalog`")


def quant(name: str) -> Quant:
    table = _models()["quantizations"]
    entry = table.get(name.lower())
    if entry is None:
        raise InvalidRequestError(f"unknown quantization {name!r}", fix=f"use one of {', '.join(table)}")
    return Quant(name.lower(), float(entry["bpw"]), entry["quality"])


def quant_names() -> list[str]:
    return list(_models()["quantizations"])


def gpu(name: str) -> Accelerator:
    gpus = _hardware()["gpus"]
    match = next((k for k in gpus if k.lower() == name.lower()), None)
    if match is None:
        raise InvalidRequestError(f"unknown GPU {name!r}", fix=f"use one of {', '.join(gpus)}")
    return Accelerator(name=match, **gpus[match])


def gpu_names() -> list[str]:
    return list(_hardware()["gpus"])


def cpu(name: str) -> Accelerator:
    cpus = _hardware()["cpus"]
    if name not in cpus:
        raise InvalidRequestError(f"unknown CPU {name!r}", fix=f"use one of {', '.join(cpus)}")
    entry = dict(cpus[name])
    return Accelerator(name=name, memory_gb=0, bandwidth_gbs=entry["bandwidth_gbs"], bf16_tflops=entry["bf16_tflops"],
                       power_w=entry["power_w"], price_usd=entry["price_usd"], source=entry["source"],
                       cores=entry["cores"], interconnect=f"{entry['memory_channels']}×{entry['memory']}")


# GGUF file types (llama.cpp's LLAMA_FTYPE) → quantization names in the catalog.
FILE_TYPES = {0: "f32", 1: "bf16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1", 10: "q2_k", 12: "q3_k_m",
              14: "q4_k_s", 15: "q4_k_m", 16: "q5_k_s", 17: "q5_k_m", 18: "q6_k", 24: "iq1_s", 31: "iq1_m", 32: "bf16"}


def spec_from_gguf(path: Path) -> ModelSpec:
    """A ModelSpec from a local GGUF file's header; its weights are the file's exact tensor bytes."""
    h = read_header(path)
    layers = int(h.arch("block_count", 0))
    hidden = int(h.arch("embedding_length", 0))
    heads = int(h.arch("attention.head_count", 0) or 0)
    if not (layers and hidden and heads):
        raise InvalidRequestError(f"{path}: the GGUF header lacks the model's shape (architecture {h.architecture!r})",
                                  fix="use a model converted by a current llama.cpp")
    kv_heads = int(h.arch("attention.head_count_kv", heads) or heads)
    head_dim = int(h.arch("attention.key_length", hidden // heads) or hidden // heads)
    kv_lora = int(h.arch("attention.kv_lora_rank", 0) or 0)
    vocab = int(h.arch("vocab_size", 0) or h.metadata.get("tokenizer.ggml.tokens", 0) or 0)
    params = h.tensor_bytes * 8 / _file_bpw(h) / GB
    experts = int(h.arch("expert_count", 0) or 0)
    used = int(h.arch("expert_used_count", 0) or 0)
    active = None
    if experts and used:  # rough: expert weights scale with used/total; the rest is always read
        share = 0.9
        active = params * ((1 - share) + share * used / experts)
    return ModelSpec(name=path.name, params_b=params, layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                     head_dim=head_dim, attention="mla" if kv_lora else "gqa", active_params_b=active,
                     kv_lora_rank=kv_lora, qk_rope_head_dim=int(h.arch("rope.dimension_count", 0) or 0) if kv_lora else 0,
                     vocab=vocab or 32000, max_context=int(h.arch("context_length", 4096)), family=h.architecture,
                     file_bytes=h.tensor_bytes, file_quant=FILE_TYPES.get(int(h.metadata.get("general.file_type", -1)), "unknown"))


# bits per weight of GGUF file types the quantization catalog (models.yaml) does not list
_OTHER_BPW = {"f32": 32, "q4_1": 5.0, "q5_0": 5.5, "q5_1": 6.0, "q2_k": 2.63, "q3_k_m": 3.91, "q5_k_s": 5.57}


def _file_bpw(h) -> float:
    name = FILE_TYPES.get(int(h.metadata.get("general.file_type", -1)), "")
    table = _models()["quantizations"]
    return float(table[name]["bpw"]) if name in table else _OTHER_BPW.get(name, 16.0)
