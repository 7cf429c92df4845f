"""A Hugging Face model folder (config.json + *.safetensors) as a ModelSpec, from headers only.

A safetensors file is an 8-byte little-endian header length, a JSON header naming each tensor's
dtype, shape and byte range, then the data. The header is validated before it is trusted: its
size is capped, it must be a JSON object of tensors whose ranges lie inside the file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from .catalog import ModelSpec

MAX_HEADER = 100 * 2**20
DTYPE_QUANT = {"BF16": "bf16", "F16": "bf16", "F32": "f32", "F8_E4M3": "fp8", "F8_E5M2": "fp8", "I8": "int8", "U8": "int8"}


def tensor_bytes(path: Path) -> tuple[int, dict[str, int]]:
    """(bytes of tensor data, bytes per dtype) of one safetensors file, after validating its header."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise _bad(path, "shorter than its header length")
        length = struct.unpack("<Q", raw)[0]
        if length > MAX_HEADER or length + 8 > size:
            raise _bad(path, f"header length {length} is impossible for a {size}-byte file")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _bad(path, "its header is not JSON") from None
    if not isinstance(header, dict):
        raise _bad(path, "its header is not a JSON object")
    data = size - 8 - length
    by_dtype: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data or not isinstance(info.get("dtype"), str)):
            raise _bad(path, f"tensor {name!r} has a bad dtype or byte range")
        by_dtype[info["dtype"]] = by_dtype.get(info["dtype"], 0) + offsets[1] - offsets[0]
    return sum(by_dtype.values()), by_dtype


def _bad(path: Path, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"{path} is not a valid safetensors file: {why}", fix="download it again and verify it")


def spec_from_hf_dir(folder: Path) -> ModelSpec:
    config_path = folder / "config.json"
    try:
        config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequestError(f"{folder} has no config.json", fix="point at a Hugging Face model folder or a .gguf file") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequestError(f"{config_path} is not JSON", fix="download the model again") from None
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise InvalidRequestError(f"{folder} has no .safetensors files",
                                  fix="pickle weights (.bin, .pt) are not read; convert them to safetensors")
    total, by_dtype = 0, {}
    for file in files:
        n, kinds = tensor_bytes(file)
        total += n
        for k, v in kinds.items():
            by_dtype[k] = by_dtype.get(k, 0) + v
    main = max(by_dtype, key=by_dtype.get) if by_dtype else "BF16"
    quant = "fp8" if (config.get("quantization_config") or {}).get("quant_method") == "fp8" else DTYPE_QUANT.get(main, "bf16")
    try:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        layers = int(config["num_hidden_layers"])
    except (KeyError, TypeError, ValueError):
        raise InvalidRequestError(f"{config_path} lacks num_hidden_layers, hidden_size or num_attention_heads",
                                  fix="use the model's original config.json") from None
    bytes_per_param = {"bf16": 2, "f32": 4, "fp8": 1, "int8": 1}[quant]
    params = total / bytes_per_param / 1e9
    experts, used = config.get("n_routed_experts") or config.get("num_experts"), config.get("num_experts_per_tok")
    active = params * (0.1 + 0.9 * used / experts) if experts and used else None
    kv_lora = int(config.get("kv_lora_rank") or 0)
    return ModelSpec(name=folder.name, params_b=params, layers=layers, hidden=hidden, heads=heads,
                     kv_heads=int(config.get("num_key_value_heads") or heads),
                     head_dim=int(config.get("head_dim") or config.get("v_head_dim") or hidden // heads),
                     attention="mla" if kv_lora else "gqa", active_params_b=active, kv_lora_rank=kv_lora,
                     qk_rope_head_dim=int(config.get("qk_rope_head_dim") or 0), vocab=int(config.get("vocab_size") or 32000),
                     max_context=int(config.get("max_position_embeddings") or 4096), family=str(config.get("model_type", "")),
                     native=quant, file_bytes=total, file_quant=quant)
