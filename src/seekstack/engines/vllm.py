"""vLLM: ``vllm serve`` as a supervised child process, spoken to in vLLM's OpenAI dialect.

Launch (from :class:`~.launch.LaunchSpec`, the same for ``plan`` and ``serve``): tensor /
pipeline / data parallel sizes, expert parallel, ``--max-model-len``, ``--max-num-seqs``,
``--gpu-memory-utilization``, quantization, ``--served-model-name``, the DeepSeek-R1 reasoning
parser, prefix caching. Its API key comes in ``VLLM_API_KEY`` (an environment variable, not
the command line, where any local user could read it). vLLM ≥ 0.10.2 logs no request text
unless ``--enable-log-requests`` is given.

Dialect: ``/tokenize`` counts a chat after its template; load from ``vllm:num_requests_waiting``,
``vllm:num_requests_running``, ``vllm:kv_cache_usage_perc`` (a ratio despite its name).
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

import orjson

from .backend import Kind
from .base import ProcessEngine
from .launch import LaunchSpec, planned_tensor_parallel, spec_from_model
from .openai import OpenAIDialect
from .registry import EngineKind, register_engine
from .settings import VllmSettings

REASONING_PARSER = {"deepseek_r1": "deepseek_r1"}


class VllmBackend(OpenAIDialect):
    kind = "vllm"
    load_metrics = {"queued": "vllm:num_requests_waiting", "running": "vllm:num_requests_running",
                    "kv_use": "vllm:kv_cache_usage_perc"}
    native_reasoning_default = True  # launched with --reasoning-parser deepseek_r1
    counts_tokens = True
    resumes = "continue_final_message"

    async def count_tokens(self, kind: Kind, body: dict[str, Any]) -> int | None:
        if kind == "chat":
            ask = {"model": self.model.name, "messages": body["messages"], "add_generation_prompt": True,
                   **{k: body[k] for k in ("tools", "chat_template_kwargs") if k in body}}
        else:
            ask = {"model": self.model.name, "prompt": body["prompt"]}
        reply = await self.http.request(self.base_url, "POST", "/tokenize", orjson.dumps(ask), headers=self._json_headers)
        try:
            content = await reply.read()
        finally:
            reply.close()
        if reply.status != 200:
            raise self.translate_error(reply.status, content)
        data = orjson.loads(content)
        return int(data["count"]) if "count" in data else len(data.get("tokens") or [])


def vllm_command(spec: LaunchSpec) -> list[str]:
    """``vllm serve``. A replica over several hosts is tensor parallel inside each host and pipeline
    parallel across them, on a Ray cluster the hosts have joined (docs/engines.md)."""
    tp, pp = spec.tensor_parallel, spec.pipeline_parallel
    if spec.nodes > 1:
        tp, pp = spec.tensor_parallel // spec.nodes, pp * spec.nodes
    args = ["vllm", "serve", spec.model, "--host", spec.host, "--port", str(spec.port),
            "--served-model-name", spec.served_name, "--max-model-len", str(spec.context),
            "--max-num-seqs", str(spec.max_seqs), "--tensor-parallel-size", str(tp),
            "--gpu-memory-utilization", f"{spec.gpu_memory_utilization:g}"]
    if pp > 1:
        args += ["--pipeline-parallel-size", str(pp)]
    if spec.nodes > 1:
        args += ["--distributed-executor-backend", "ray"]
    if spec.data_parallel > 1:
        args += ["--data-parallel-size", str(spec.data_parallel)]
    if spec.expert_parallel > 1:
        args.append("--enable-expert-parallel")
    if spec.quantization:
        args += ["--quantization", spec.quantization]
    if spec.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", spec.kv_cache_dtype]
    if spec.reasoning in REASONING_PARSER:
        args += ["--reasoning-parser", REASONING_PARSER[spec.reasoning]]
    args.append("--enable-prefix-caching" if spec.prefix_caching else "--no-enable-prefix-caching")
    return args + list(spec.extra_args)


class VllmProcess(ProcessEngine):
    uses_unix_socket = False  # vLLM serves TCP; the API key keeps everyone but the gateway out

    def launch(self) -> LaunchSpec:
        planned = None if self.model.engine.tensor_parallel else planned_tensor_parallel(self.model, "vllm")
        return spec_from_model(self.model, port=self.port, api_key=self.api_key, planned_tp=planned)

    def command(self) -> list[str]:
        argv = vllm_command(self.launch())
        if self.model.engine.simulate:
            return [sys.executable, "-m", "seekstack.sim", *argv]
        return [shutil.which("vllm") or "vllm", *argv[1:]]

    def environment(self) -> dict[str, str]:
        return {"VLLM_API_KEY": self.api_key} if self.api_key else {}


register_engine(EngineKind("vllm", VllmSettings, VllmBackend, VllmProcess, vllm_command, needs_gpu=True,
                           summary="vLLM on NVIDIA GPUs: tensor / pipeline / data / expert parallel"))
