"""SGLang: ``python -m sglang.launch_server`` as a supervised child process, in SGLang's dialect.

Launch (from :class:`~.launch.LaunchSpec`, the same for ``plan`` and ``serve``): ``--tp-size``,
``--dp-size``, ``--ep-size``, DP-attention for DeepSeek's MLA models, ``--context-length``,
``--max-running-requests``, the ``deepseek-r1`` reasoning parser, ``--enable-metrics``, and
``--api-key`` (SGLang reads it only from its command line: the engine listens on loopback,
and the key is made anew at each start).

Dialect: no token counting route (a prompt that does not fit is refused by the engine, which
becomes our 400 ``context_length_exceeded``); load from ``sglang:num_queue_reqs``,
``sglang:num_running_reqs``, ``sglang:token_usage``.
"""

from __future__ import annotations

import sys

from .base import ProcessEngine
from .launch import LaunchSpec, planned_tensor_parallel, spec_from_model
from .openai import OpenAIDialect
from .registry import EngineKind, register_engine
from .settings import SglangSettings

REASONING_PARSER = {"deepseek_r1": "deepseek-r1"}


class SglangBackend(OpenAIDialect):
    kind = "sglang"
    load_metrics = {"queued": "sglang:num_queue_reqs", "running": "sglang:num_running_reqs",
                    "kv_use": "sglang:token_usage"}
    native_reasoning_default = True  # launched with --reasoning-parser deepseek-r1
    resumes = "continue_final_message"


def sglang_command(spec: LaunchSpec) -> list[str]:
    args = ["python", "-m", "sglang.launch_server", "--model-path", spec.model, "--host", spec.host,
            "--port", str(spec.port), "--served-model-name", spec.served_name,
            "--context-length", str(spec.context), "--max-running-requests", str(spec.max_seqs),
            "--tp-size", str(spec.tensor_parallel), "--enable-metrics"]
    if spec.nodes > 1:  # the same command on every host, with its own --node-rank (0 is the leader)
        args += ["--nnodes", str(spec.nodes), "--node-rank", "0", "--dist-init-addr", "LEADER_HOST:5000"]
    if spec.data_parallel > 1:
        args += ["--dp-size", str(spec.data_parallel)]
    if spec.dp_attention:
        args.append("--enable-dp-attention")
    if spec.expert_parallel > 1:
        args += ["--ep-size", str(spec.expert_parallel)]
    if spec.quantization:
        args += ["--quantization", spec.quantization]
    if spec.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", "fp8_e4m3"]
    if spec.mem_fraction_static is not None:
        args += ["--mem-fraction-static", f"{spec.mem_fraction_static:g}"]
    if spec.reasoning in REASONING_PARSER:
        args += ["--reasoning-parser", REASONING_PARSER[spec.reasoning]]
    if not spec.prefix_caching:
        args.append("--disable-radix-cache")
    if spec.pooled:  # SGLang serves /v1/embeddings and /v1/rerank only in this mode
        args.append("--is-embedding")
    if spec.api_key:
        args.append(f"--api-key={spec.api_key}")  # one word: a key never reads as a flag
    return args + list(spec.extra_args)


class SglangProcess(ProcessEngine):
    uses_unix_socket = False

    def launch(self) -> LaunchSpec:
        planned = None if self.model.engine.tensor_parallel else planned_tensor_parallel(self.model, "sglang")
        return spec_from_model(self.model, port=self.port, api_key=self.api_key, planned_tp=planned)

    def command(self) -> list[str]:
        argv = sglang_command(self.launch())
        if self.model.engine.simulate:
            return [sys.executable, "-m", "seekstack.sim", *argv[2:]]  # sglang.launch_server --model-path …
        return [sys.executable, *argv[1:]]


register_engine(EngineKind("sglang", SglangSettings, SglangBackend, SglangProcess, sglang_command, needs_gpu=True,
                           summary="SGLang on NVIDIA GPUs: tensor / data / expert parallel, DP-attention"))
