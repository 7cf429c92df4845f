"""Child-process entry point for the llama.cpp engine: ``python -m seekstack.engines.llamacpp_worker SPEC_JSON``.

Arms the lifeline (dies with the gateway), starts ``xllamacpp.Server``, then waits
for SIGTERM/SIGINT and shuts the server down.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from .lifeline import die_with_parent

ENGINE_KEY_ENV = "SEEKSTACK_ENGINE_API_KEY"  # the key every request must carry (in the environment, not argv)
_REASONING = {"deepseek": "COMMON_REASONING_FORMAT_DEEPSEEK", None: "COMMON_REASONING_FORMAT_NONE"}


def build_params(spec: dict):
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = spec["model_path"]
    p.n_ctx = spec["n_ctx"]
    p.n_parallel = spec["n_parallel"]
    # HTTP threads: one per slot's stream, plus the gateway's spare connection, its heartbeat
    # and a tokenize/template call (llama.cpp's default, slots + 2, leaves no room for them).
    p.n_threads_http = spec["n_parallel"] + 4
    p.cpuparams.n_threads = spec["threads"]
    p.cpuparams_batch.n_threads = spec["threads"]
    p.n_gpu_layers = spec["gpu_layers"]
    p.hostnames = [spec["host"]]
    p.port = spec["port"]
    if os.environ.get(ENGINE_KEY_ENV):  # on TCP: only the gateways holding the key get in (/health stays open)
        p.api_keys = [os.environ[ENGINE_KEY_ENV]]
    p.endpoint_metrics = True
    p.endpoint_slots = True
    p.cont_batching = True
    p.warmup = False
    p.cache_ram_mib = spec.get("prompt_cache_mib", 256)  # bounded: the planner counts it
    if spec.get("rope_scaling"):  # a context past the trained one, on purpose
        p.rope_scaling_type = getattr(xllamacpp.llama_rope_scaling_type,
                                      f"LLAMA_ROPE_SCALING_TYPE_{spec['rope_scaling'].upper()}")
        p.rope_freq_scale = min(spec["rope_scale"], 1.0)
    if spec.get("chat_template"):
        p.chat_template = spec["chat_template"]
    if spec.get("embeddings"):
        p.embedding = True
        p.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    elif spec.get("rerank"):  # llama.cpp's --reranking: the query and a document in one sequence, scored
        p.embedding = True
        p.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
    # The physical batch (planner/plan.py: embedding_batch): an input is embedded in one step, its
    # tokens attending to each other, so an embedding model's holds a whole request's context —
    # with llama.cpp's 512, inputs past 512 tokens were refused.
    p.n_ubatch = spec.get("batch", p.n_ubatch)
    p.n_batch = max(p.n_batch, p.n_ubatch)
    p.reasoning_format = getattr(xllamacpp.common_reasoning_format, _REASONING[spec.get("reasoning")])
    return p


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    parent = os.environ.get("SEEKSTACK_PARENT_PID")
    if parent:
        die_with_parent(int(parent))
    # Block the stop signals before xllamacpp starts its threads, so they reach sigwait below.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        import xllamacpp

        server = xllamacpp.Server(build_params(spec))
    except Exception as exc:  # the model failed to load: say so on one line and exit non-zero
        print(f"seekstack-worker: failed to start llama.cpp: {exc}", file=sys.stderr, flush=True)
        return 3
    print(f"seekstack-worker: listening on {server.listening_address}", flush=True)
    signal.sigwait(stop_signals)
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
