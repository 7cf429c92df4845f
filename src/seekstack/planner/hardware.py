"""Hardware to plan for: parsed from ``--hardware`` (``8xH100``, ``2x8xH100``, ``2xA100-80G``,
``cpu``, ``cpu:epyc-9654``) or detected on this machine (``auto``: NVML GPUs, else the CPU).
A CPU plan uses this machine's RAM; ``cpu:NAME`` takes the memory bandwidth of a catalog CPU."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequestError
from .catalog import Accelerator, cpu, gpu, gpu_names

GIB = 2**30


@dataclass(frozen=True)
class Hardware:
    device: Accelerator
    gpus_per_node: int = 0          # 0: a CPU machine
    nodes: int = 1
    ram_bytes: int = 0              # host memory (CPU plans, llama.cpp offload)

    @property
    def is_gpu(self) -> bool:
        return self.gpus_per_node > 0

    @property
    def gpus(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def label(self) -> str:
        if not self.is_gpu:
            return f"CPU {self.device.name} ({self.ram_bytes / GIB:.0f} GiB RAM)"
        return (f"{self.nodes}×" if self.nodes > 1 else "") + f"{self.gpus_per_node}×{self.device.name}"


def parse_hardware(text: str, detected: dict[str, Any] | None = None) -> Hardware:
    text = text.strip()
    if text == "auto":
        return from_detection(detected if detected is not None else detect())
    if text == "cpu" or text.startswith("cpu:"):
        info = detected if detected is not None else detect()
        name = text.partition(":")[2] or "desktop"
        return Hardware(device=cpu(name), ram_bytes=info["ram_bytes"])
    m = re.fullmatch(r"(?:(\d+)\s*[x×]\s*)?(?:(\d+)\s*[x×]\s*)?([A-Za-z0-9-]+)", text)
    if not m:
        raise InvalidRequestError(f"cannot read hardware {text!r}", fix="write e.g. 8xH100, 2x8xH100, 2xA100-80G, cpu or auto")
    first, second, name = m.groups()
    nodes, per_node = (int(first), int(second)) if second else (1, int(first or 1))
    if per_node < 1 or nodes < 1:
        raise InvalidRequestError(f"hardware {text!r} has no GPUs", fix="write e.g. 8xH100")
    try:
        device = gpu(name)
    except InvalidRequestError:
        aliases = {"a100": "A100-80G", "4090": "RTX-4090", "3090": "RTX-3090", "rtx4090": "RTX-4090", "rtx3090": "RTX-3090"}
        if name.lower() not in aliases:
            raise InvalidRequestError(f"unknown GPU {name!r}", fix=f"use one of {', '.join(gpu_names())}") from None
        device = gpu(aliases[name.lower()])
    # a named GPU server's host RAM is unknown: no CPU offload is planned for it
    return Hardware(device=device, gpus_per_node=per_node, nodes=nodes)


def from_detection(info: dict[str, Any]) -> Hardware:
    if info["gpus"]:
        first = info["gpus"][0]
        device = match_gpu(first["name"], first["memory_bytes"])
        return Hardware(device=device, gpus_per_node=len(info["gpus"]), ram_bytes=info["ram_bytes"])
    local = cpu("desktop")
    local = Accelerator(name=f"this machine ({info['cpu_model'] or 'CPU'}, {info['cores']} cores)", memory_gb=0,
                        bandwidth_gbs=local.bandwidth_gbs, bf16_tflops=local.bf16_tflops, power_w=local.power_w,
                        price_usd=local.price_usd, source="detected; bandwidth assumed as a dual-channel DDR5 desktop",
                        cores=info["cores"])
    return Hardware(device=local, ram_bytes=info["ram_bytes"])


def match_gpu(name: str, memory_bytes: int) -> Accelerator:
    """The catalog entry for an NVML device name (e.g. 'NVIDIA H100 80GB HBM3'); else its own numbers."""
    lowered = name.lower().replace(" ", "").replace("-", "")
    for candidate in sorted(gpu_names(), key=len, reverse=True):
        key = candidate.lower().replace("-", "")
        base = key.replace("40g", "").replace("80g", "")
        if base in lowered and (key == base or key[len(base):].rstrip("g") in lowered):
            return gpu(candidate)
    return Accelerator(name=name, memory_gb=memory_bytes / 1e9, bandwidth_gbs=1000, bf16_tflops=100, power_w=300,
                       price_usd=0, source="detected; not in the catalog, bandwidth and TFLOPs assumed", vendor="nvidia")


def detect(nvml: Any = None) -> dict[str, Any]:
    """What this machine has: CPU model, flags, cores, RAM, and NVIDIA GPUs through NVML."""
    import psutil

    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    features = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AMX", "amx_tile")) if flag in flags]
    return {"cpu_model": model, "cpu_features": features, "cores": os.cpu_count() or 1,
            "ram_bytes": psutil.virtual_memory().total, "available_bytes": psutil.virtual_memory().available,
            "gpus": nvidia_gpus(nvml)}


NVLINK_MAX_LINKS = 18


def _nvlinks(nvml: Any, handle: Any) -> int:
    """Active NVLink links of a GPU (0 on PCIe-only cards, or when NVML cannot tell)."""
    active = 0
    for link in range(NVLINK_MAX_LINKS):
        try:
            if nvml.nvmlDeviceGetNvLinkState(handle, link):
                active += 1
        except Exception:  # no such link (or no NVLink at all): stop counting
            break
    return active


def amd_gpus(run: Any = None) -> list[str]:
    """AMD GPUs from `rocm-smi --showproductname` (its "Card series" lines), when rocm-smi is installed."""
    import shutil
    import subprocess

    if run is None:
        if not shutil.which("rocm-smi"):
            return []
        try:
            text = subprocess.run(["rocm-smi", "--showproductname"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
    else:
        text = run()
    return [line.split(":", 2)[-1].strip() for line in text.splitlines() if "card series" in line.lower()]


def nvidia_gpus(nvml: Any = None) -> list[dict[str, Any]]:
    """NVIDIA GPUs via NVML: name, memory, driver and CUDA version; [] when there is no driver."""
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
    except Exception:
        return []
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
        cuda = nvml.nvmlSystemGetCudaDriverVersion()
        out = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(handle)
            out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else str(name),
                        "memory_bytes": int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                        "driver": driver.decode() if isinstance(driver, bytes) else str(driver),
                        "cuda": f"{cuda // 1000}.{cuda % 1000 // 10}", "nvlinks": _nvlinks(nvml, handle)})
        return out
    except Exception:
        return []
