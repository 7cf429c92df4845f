"""Planner: which hardware, which quantization, how much memory and speed — and admission
control, so `serve` refuses what cannot fit instead of crashing at load."""

from __future__ import annotations

from pathlib import Path

from .catalog import ModelSpec, catalog_model, spec_from_gguf
from .hardware import Hardware, detect, parse_hardware
from .plan import Plan, make_plan, quantization_table

__all__ = ["ModelSpec", "Hardware", "Plan", "resolve_model", "default_quant", "make_plan", "quantization_table",
           "parse_hardware", "detect"]


def resolve_model(name: str) -> ModelSpec:
    """A catalog name, a local GGUF file, or a Hugging Face folder (config.json + safetensors)."""
    from ..errors import InvalidRequestError
    from .safetensors import spec_from_hf_dir

    path = Path(name).expanduser()
    if path.is_dir():
        return spec_from_hf_dir(path)
    if path.suffix.lower() == ".gguf" or path.exists():
        if not path.is_file():
            raise InvalidRequestError(f"{path} does not exist", fix="pass a .gguf file, a model folder or a catalog name")
        return spec_from_gguf(path)
    return catalog_model(name)


def default_quant(spec: ModelSpec, hw: Hardware) -> str:
    if spec.file_bytes is not None:
        return spec.file_quant or "file"
    if not hw.is_gpu:
        return "q4_k_m"
    return spec.native if spec.native != "fp8" or hw.device.fp8_tflops else "q4_k_m"
