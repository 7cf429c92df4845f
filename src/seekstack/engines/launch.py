"""One launch description for GPU engines, made from a plan or from a model entry — one truth.

``seekstack plan MODEL --engine vllm --json`` prints the command built from a :class:`LaunchSpec`
made of the plan; ``seekstack serve`` starts the engine with the command built from the
:class:`LaunchSpec` made of the model's entry in ``seekstack.yaml``. Both go through the engine's
own ``launch`` function, so what the planner shows is what serve runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import ModelConfig
    from ..planner.plan import Plan

# Quantizations an engine applies to bf16 weights when it loads them; a checkpoint already in
# that format is loaded as it is (its config says so), without the flag.
ONLINE_QUANT = {"fp8", "awq", "gptq", "bitsandbytes"}
API_KEY_PLACEHOLDER = "<made at each start; held by the gateway>"


@dataclass(frozen=True)
class LaunchSpec:
    model: str                       # a local model folder (or a hub id, outside air-gapped sites)
    served_name: str
    context: int
    max_seqs: int
    host: str = "127.0.0.1"
    port: int = 8000
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    data_parallel: int = 1
    expert_parallel: int = 1         # vLLM: >1 turns expert parallel on; SGLang: --ep-size
    nodes: int = 1                   # hosts one replica spans (vLLM: pipeline stages over Ray; SGLang: --nnodes)
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    reasoning: str = "none"          # "deepseek_r1": the engine's DeepSeek-R1 reasoning parser
    prefix_caching: bool = True
    dp_attention: bool = False
    gpu_memory_utilization: float = 0.90
    mem_fraction_static: float | None = None
    api_key: str | None = None       # SGLang takes it as an argument; vLLM from VLLM_API_KEY
    pooled: bool = False             # an embedding model or a reranker (SGLang: --is-embedding)
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def spec_from_plan(plan: "Plan", model: str, *, served_name: str, native: str, reasoning: str,
                   gpus_per_node: int = 0) -> LaunchSpec:
    """The launch of one replica as the plan sizes it (the serving defaults for everything else).

    A replica wider than one host spans ``nodes`` hosts of ``gpus_per_node`` GPUs each."""
    quant = plan.quantization.lower()
    gpus = plan.tensor_parallel or 1
    nodes = gpus // gpus_per_node if gpus_per_node and gpus > gpus_per_node else 1
    return LaunchSpec(model=model, served_name=served_name, context=plan.context,
                      max_seqs=plan.concurrency, tensor_parallel=gpus, nodes=nodes,
                      quantization=quant if quant in ONLINE_QUANT and quant != native else None,
                      kv_cache_dtype="fp8" if plan.kv_dtype == "fp8" else "auto", reasoning=reasoning,
                      api_key=API_KEY_PLACEHOLDER)


def spec_from_model(model: "ModelConfig", *, port: int, api_key: str | None, planned_tp: int | None = None) -> LaunchSpec:
    """The launch of one replica of a model entry (``engine: {kind: vllm|sglang, ...}``)."""
    engine: Any = model.engine
    quant = (model.quantization or "").lower()
    ep = engine.expert_parallel
    return LaunchSpec(
        model=str(model.resolved_path()), served_name=model.name, context=model.context, max_seqs=model.slots,
        host=engine.host, port=port, tensor_parallel=engine.tensor_parallel or planned_tp or 1,
        pipeline_parallel=getattr(engine, "pipeline_parallel", 1), data_parallel=engine.data_parallel,
        expert_parallel=(2 if ep else 1) if isinstance(ep, bool) else ep,
        quantization=quant if quant in ONLINE_QUANT else None,
        kv_cache_dtype=engine.kv_cache_dtype, reasoning=model.reasoning_format(),
        prefix_caching=getattr(engine, "prefix_caching", True),
        dp_attention=_dp_attention(model, engine),
        gpu_memory_utilization=getattr(engine, "gpu_memory_utilization", 0.90),
        mem_fraction_static=getattr(engine, "mem_fraction_static", None),
        api_key=api_key, pooled=model.pooled, extra_args=tuple(engine.extra_args))


def planned_tensor_parallel(model: "ModelConfig", engine: str) -> int | None:
    """GPUs per replica as the planner sizes this model on this machine's GPUs (None: no GPU here, or
    the model cannot be read: the engine's own default, 1, applies)."""
    from ..errors import SeekstackError
    from ..planner import default_quant, detect, make_plan, parse_hardware, resolve_model

    try:
        hw = parse_hardware("auto", detect())
        if not hw.is_gpu:
            return None
        spec = resolve_model(str(model.resolved_path()))
        plan = make_plan(spec, hw, quant_name=default_quant(spec, hw), context=model.context,
                         concurrency=model.slots, engine=engine)
    except (SeekstackError, OSError, ValueError):
        return None
    return plan.tensor_parallel


def _dp_attention(model: "ModelConfig", engine: Any) -> bool:
    explicit = getattr(engine, "dp_attention", None)
    if explicit is not None:
        return explicit
    return uses_mla(model.name, model.path.name if model.path else None) and engine.data_parallel > 1


def uses_mla(*names: str | None) -> bool:
    """DeepSeek V2 / V3 / R1 (MLA attention) — not the R1 distills, which are Qwen and Llama models."""
    lowered = [n.lower().replace("_", "-") for n in names if n]
    return any(any(k in n for k in ("deepseek-v2", "deepseek-v3", "deepseek-r1")) and "distill" not in n
               for n in lowered)
