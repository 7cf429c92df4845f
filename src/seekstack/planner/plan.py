"""The plan: memory per replica, placement on the hardware, and throughput bounds — each number
with the formula that produced it.

Memory (bytes):
- weights = the file's tensor bytes (local GGUF), else the published size for the quantization,
  else params × bpw ÷ 8;
- KV cache per token: MLA (DeepSeek V2/V3/R1, latent cache) = layers × (kv_lora_rank +
  qk_rope_head_dim) × kv bytes; GQA = 2 × layers × kv_heads × head_dim × kv bytes;
  KV total = per token × context × concurrency;
- overhead: llama.cpp = 16 MiB + 512 × hidden × 64 B (compute buffer for a 512-token batch; an
  embedding model's batch is a whole request's context, which it embeds in one step) +
  vocab × 4 B × concurrency (logits) + 96 MiB for the engine process itself (interpreter,
  libraries, HTTP threads, tokenizer: the embedded model's engine holds 219 MiB after loading
  against 149 MiB of weights, KV and buffers, 70 MiB more; 81 MiB more after 30 requests in
  CI's full run, where its health and load are read four times a second); vLLM / SGLang = 2 GiB per GPU (CUDA context,
  graphs, activations), and only 90 % of each GPU is usable (gpu_memory_utilization);
- prompt cache (llama.cpp): the host memory it may keep for earlier prompts' KV
  (``prompt_cache_mib``, 256 MiB by default; llama.cpp's own default is 8 GiB), host RAM.

Placement: the smallest tensor-parallel degree t (a power of two dividing the attention heads)
with weights ÷ t + KV (÷ t for GQA; MLA's latent cache is replicated on every rank) + overhead
within the usable memory of one GPU; replicas = GPUs ÷ t. llama.cpp on a GPU that is too small
offloads whole layers to the CPU.

Throughput (upper bounds, roofline):
- decode tokens/s per sequence ≈ bandwidth × t ÷ (active weight bytes + KV bytes of one sequence);
  with C sequences in a batch, the weights are read once per step: aggregate ≈ C × bandwidth × t ÷
  (active weight bytes + C × KV bytes), capped by compute (2 × active params FLOPs per token);
- prefill tokens/s ≈ TFLOPs × t ÷ (2 × active params).
These are bounds: one dense model on one GPU reaches about 50–70 % of the bandwidth bound;
tensor-parallel MoE much less (all-reduce and expert routing per layer).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InvalidRequestError
from .catalog import GB, ModelSpec, quant
from .hardware import GIB, Hardware

MIB = 2**20
KV_BYTES = {"bf16": 2, "fp16": 2, "f16": 2, "fp8": 1, "q8_0": 1.0625, "q4_0": 0.5625}
GPU_USABLE = 0.90          # vLLM's gpu_memory_utilization default
SERVER_OVERHEAD = 2 * GIB  # per GPU, vLLM / SGLang
RAM_USABLE = 0.90          # leave the OS and the gateway room
BATCH = 512  # llama.cpp's physical batch (n_ubatch): tokens computed in one step
ENGINE_PROCESS = 96 * MIB  # llama.cpp worker process: interpreter, libraries, HTTP threads, tokenizer (measured 70-81)
PROMPT_CACHE = 256 * MIB   # llama.cpp host prompt cache, ModelConfig.prompt_cache_mib's default


def kv_bytes_per_token(spec: ModelSpec, kv_dtype: str = "bf16") -> float:
    b = KV_BYTES.get(kv_dtype)
    if b is None:
        raise InvalidRequestError(f"unknown KV cache type {kv_dtype!r}", fix=f"use one of {', '.join(KV_BYTES)}")
    if spec.attention == "mla":
        return spec.layers * (spec.kv_lora_rank + spec.qk_rope_head_dim) * b
    return 2 * spec.layers * spec.kv_heads * spec.head_dim * b


def weight_bytes(spec: ModelSpec, quant_name: str) -> tuple[float, str]:
    """(bytes, where the number comes from)."""
    if spec.file_bytes is not None and (quant_name in (spec.file_quant, "file")):
        return float(spec.file_bytes), "the file's tensor table"
    if quant_name in spec.sizes_gb:
        return spec.sizes_gb[quant_name] * GB, "published size"
    q = quant(quant_name)
    return spec.params_b * 1e9 * q.bpw / 8, f"{spec.params_b:g}B params × {q.bpw} bits ÷ 8"


def embedding_batch(context: int) -> int:
    """An embedding model's physical batch: a whole request's context (at least llama.cpp's 512)."""
    return max(context, BATCH)


def overhead_bytes(spec: ModelSpec, engine: str, concurrency: int, batch: int = BATCH) -> float:
    if engine == "llamacpp":
        return 16 * MIB + batch * spec.hidden * 64 + spec.vocab * 4 * concurrency + ENGINE_PROCESS
    return SERVER_OVERHEAD


@dataclass
class Plan:
    model: str
    quantization: str
    engine: str
    hardware: str
    context: int
    concurrency: int
    kv_dtype: str
    weights_bytes: float
    weights_source: str
    kv_per_token_bytes: float
    kv_bytes: float
    overhead_bytes: float
    total_bytes: float                 # one replica, all ranks together
    fits: bool
    tensor_parallel: int | None        # GPUs per replica (None: CPU, or does not fit)
    replicas: int
    per_gpu_bytes: float | None
    usable_per_device_bytes: float
    gpu_layers: int | None = None      # llama.cpp offload: layers on the GPU (None: all)
    decode_tps_single: float = 0.0
    decode_tps_aggregate: float = 0.0
    prefill_tps: float = 0.0
    assumptions: list[str] = field(default_factory=list)
    smallest_fix: str | None = None
    prompt_cache_bytes: float = 0.0    # llama.cpp: host memory for earlier prompts' KV (in total_bytes on a CPU)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def make_plan(spec: ModelSpec, hw: Hardware, *, quant_name: str, context: int, concurrency: int = 1,
              engine: str = "auto", kv_dtype: str | None = None, explain: bool = True,
              prompt_cache_bytes: float | None = None, batch: int = BATCH) -> Plan:
    """``batch``: the tokens llama.cpp computes in one step — 512, or a whole request's context
    for an embedding model, which embeds an input in one step."""
    if engine == "auto":
        engine = "llamacpp" if (not hw.is_gpu or spec.file_bytes is not None or quant_name.startswith(("q", "iq"))) else "vllm"
    kv_dtype = kv_dtype or ("f16" if engine == "llamacpp" else "bf16")
    if context < 1 or concurrency < 1:
        raise InvalidRequestError("context and concurrency must be positive", fix="e.g. --context 8192 --concurrency 4")
    weights, source = weight_bytes(spec, quant_name)
    per_token = kv_bytes_per_token(spec, kv_dtype)
    kv = per_token * context * concurrency
    overhead = overhead_bytes(spec, engine, concurrency, batch)
    assumptions = [f"weights: {source}",
                   f"KV: {'MLA latent' if spec.attention == 'mla' else 'GQA'} {per_token:,.0f} B/token × {context:,} × {concurrency}",
                   f"overhead: {_overhead_text(engine, batch)}"]
    cache = (PROMPT_CACHE if prompt_cache_bytes is None else prompt_cache_bytes) if engine == "llamacpp" else 0.0
    if cache:
        assumptions.append(f"prompt cache: {cache / MIB:,.0f} MiB of host memory (prompt_cache_mib)")
    plan = Plan(spec.name, quant_name, engine, hw.label, context, concurrency, kv_dtype, weights, source, per_token, kv,
                overhead, weights + kv + overhead + (0.0 if hw.is_gpu else cache), False, None, 0, None, 0.0,
                assumptions=assumptions, prompt_cache_bytes=cache)
    if hw.is_gpu:
        _place_on_gpus(plan, spec, hw)
    else:
        _place_on_cpu(plan, hw)
    _throughput(plan, spec, hw)
    if not plan.fits and explain:
        plan.smallest_fix = smallest_fix(spec, hw, plan)
    return plan


def _overhead_text(engine: str, batch: int = BATCH) -> str:
    if engine == "llamacpp":
        return (f"llama.cpp compute buffer 16 MiB + {batch} × hidden × 64 B + logits vocab × 4 B × concurrency "
                "+ 96 MiB for the engine process")
    return "2 GiB per GPU (CUDA context, graphs, activations); 90 % of each GPU usable"


def _place_on_gpus(plan: Plan, spec: ModelSpec, hw: Hardware) -> None:
    usable = hw.device.memory_gb * GB * (GPU_USABLE if plan.engine != "llamacpp" else 0.95)
    plan.usable_per_device_bytes = usable
    degrees = [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= hw.gpus and spec.heads % t == 0]
    for t in degrees:
        kv = plan.kv_bytes if spec.attention == "mla" else plan.kv_bytes / t
        per_gpu = plan.weights_bytes / t + kv + plan.overhead_bytes
        if per_gpu <= usable:
            plan.fits, plan.tensor_parallel, plan.per_gpu_bytes = True, t, per_gpu
            plan.total_bytes = per_gpu * t  # every rank holds its overhead (and, for MLA, the whole latent cache)
            plan.replicas = hw.gpus // t
            if t > hw.gpus_per_node:
                plan.assumptions.append(f"TP {t} spans {math.ceil(t / hw.gpus_per_node)} nodes (or TP {hw.gpus_per_node} × PP)")
            return
    if plan.engine == "llamacpp" and hw.ram_bytes:  # offload what does not fit to the CPU
        per_layer = plan.weights_bytes / spec.layers
        room = usable * hw.gpus - plan.kv_bytes - plan.overhead_bytes
        on_gpu = max(0, min(spec.layers, int(room // per_layer)))
        cpu_part = plan.weights_bytes - on_gpu * per_layer
        if cpu_part <= hw.ram_bytes * RAM_USABLE:
            plan.fits, plan.tensor_parallel, plan.gpu_layers, plan.replicas = True, hw.gpus, on_gpu, 1
            plan.per_gpu_bytes = (on_gpu * per_layer + plan.kv_bytes + plan.overhead_bytes) / hw.gpus
            plan.assumptions.append(f"offload: {on_gpu}/{spec.layers} layers on GPU, {cpu_part / GB:.1f} GB of weights in RAM")


def _place_on_cpu(plan: Plan, hw: Hardware) -> None:
    usable = hw.ram_bytes * RAM_USABLE
    plan.usable_per_device_bytes = usable
    plan.fits = plan.total_bytes <= usable
    plan.replicas = int(usable // plan.total_bytes) if plan.fits else 0
    plan.assumptions.append(f"CPU: {RAM_USABLE:.0%} of {hw.ram_bytes / GIB:.1f} GiB RAM usable")


HOST_BANDWIDTH_GBS = 307  # host RAM of a GPU server (8-channel DDR5), for offloaded layers


def _throughput(plan: Plan, spec: ModelSpec, hw: Hardware) -> None:
    t = (plan.tensor_parallel or 1) if hw.is_gpu else 1
    # tensor parallelism reads each GPU's share at once; llama.cpp splits layers, read one GPU after another
    parallel = t if hw.is_gpu and plan.engine != "llamacpp" else 1
    active_share = spec.active_b / spec.params_b
    kv_seq = plan.kv_per_token_bytes * plan.context / 2  # on average half the context is filled
    gpu_weights = plan.weights_bytes
    cpu_weights = 0.0
    if plan.gpu_layers is not None:
        gpu_weights = plan.weights_bytes * plan.gpu_layers / spec.layers
        cpu_weights = plan.weights_bytes - gpu_weights
    bandwidth = hw.device.bandwidth_gbs * 1e9 * parallel

    def step_seconds(c: int) -> float:
        seconds = (gpu_weights * active_share + c * kv_seq) / bandwidth
        return seconds + cpu_weights * active_share / (HOST_BANDWIDTH_GBS * 1e9)

    plan.decode_tps_single = 1 / step_seconds(1)
    c = plan.concurrency
    flops = hw.device.bf16_tflops * 1e12 * parallel
    compute_cap = flops / (2 * spec.active_b * 1e9)
    # replicas on their own GPUs add up; replicas in one machine's RAM share its bandwidth
    plan.decode_tps_aggregate = min(c / step_seconds(c), compute_cap) * (max(plan.replicas, 1) if hw.is_gpu else 1)
    plan.prefill_tps = compute_cap
    plan.assumptions += [
        f"decode ≈ {hw.device.bandwidth_gbs:g} GB/s × {parallel} ÷ (active weights {gpu_weights * active_share / GB:.2f} GB"
        + (f" + {cpu_weights * active_share / GB:.2f} GB from RAM at {HOST_BANDWIDTH_GBS} GB/s" if cpu_weights else "")
        + " + KV of one sequence at half context): an upper bound — one dense model on one GPU reaches 50–70 % of it, "
        "tensor-parallel MoE much less (R1-AWQ on vLLM, 8×H100: 61.5 tok/s at batch 1)",
        f"prefill ≈ {hw.device.bf16_tflops:g} TFLOPs × {parallel} ÷ (2 × {spec.active_b:g}B active params)",
    ]


def smallest_fix(spec: ModelSpec, hw: Hardware, plan: Plan) -> str:
    """The smallest change that makes it fit, tried in order: context, concurrency, quantization, hardware."""
    options = []
    for ctx in (plan.context // 2, plan.context // 4, 4096, 2048):
        if 512 <= ctx < plan.context and _fits(spec, hw, plan, context=ctx):
            options.append(f"context {ctx}")
            break
    for conc in range(plan.concurrency - 1, 0, -1):
        if _fits(spec, hw, plan, concurrency=conc):
            options.append(f"{conc} concurrent sequence(s)")
            break
    for q in ("fp8", "q8_0", "q4_k_m", "iq1_s"):
        try:
            if weight_bytes(spec, q)[0] < plan.weights_bytes and _fits(spec, hw, plan, quant_name=q):
                options.append(f"quantization {q}")
                break
        except InvalidRequestError:
            continue
    if hw.is_gpu:
        need = 2 ** math.ceil(math.log2(plan.total_bytes / (hw.device.memory_gb * GB * GPU_USABLE)))
        options.append(f"{need} × {hw.device.name}" + (f" ({need // 8} nodes of 8)" if need > 8 else ""))
    else:
        options.append(f"{plan.total_bytes / RAM_USABLE / GIB:.1f} GiB of RAM")
    return "; or ".join(options)


def _fits(spec: ModelSpec, hw: Hardware, plan: Plan, **change) -> bool:
    args = {"quant_name": plan.quantization, "context": plan.context, "concurrency": plan.concurrency,
            "engine": plan.engine, "kv_dtype": plan.kv_dtype, "explain": False, **change}
    try:
        p = make_plan(spec, hw, **args)
    except InvalidRequestError:
        return False
    return p.fits


COMPARED = ("bf16", "fp8", "int8", "q8_0", "q4_k_m", "iq1_s")


def quantization_table(spec: ModelSpec, hw: Hardware, *, context: int, concurrency: int) -> list[dict[str, Any]]:
    rows = []
    for q in COMPARED:
        if q == "iq1_s" and q not in spec.sizes_gb:
            continue  # 1.58-bit only where it has been published (R1)
        if q == "fp8" and hw.is_gpu and not hw.device.fp8_tflops:
            engine = "vllm"  # weight-only FP8 (Marlin) on GPUs without FP8 units
        else:
            engine = "llamacpp" if q.startswith(("q", "iq")) or not hw.is_gpu else "vllm"
        p = make_plan(spec, hw, quant_name=q, context=context, concurrency=concurrency, engine=engine, explain=False)
        rows.append({"quantization": q, "engine": engine, "size_gb": p.weights_bytes / GB, "fits": p.fits,
                     "gpus_per_replica": p.tensor_parallel, "replicas": p.replicas,
                     "decode_tps": p.decode_tps_single, "quality": quant(q).quality})
    return rows
