"""Predicted vs measured memory of the embedded model in llama.cpp (issue #6: within ±15 %).

For n_ctx 2048, 8192 and 32768, with 1 and 4 slots, a fresh process imports xllamacpp, reads
its resident memory, starts llama.cpp's server with the embedded SmolLM2-135M on the CPU (as a
replica does), and reads it again. The planner's prediction for the same file, context and
slots (n_ctx is the engine's whole KV cache, shared by its slots) is compared with the increase.

Usage: python bench/planner_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
PROBE = r"""
import json, sys, time, psutil, xllamacpp
from seekstack.engines.llamacpp_worker import build_params
from seekstack.embedded import embedded_model_path
n_ctx, slots = int(sys.argv[1]), int(sys.argv[2])
process = psutil.Process()
time.sleep(0.3)
before = process.memory_info().rss
spec = {"model_path": str(embedded_model_path()), "host": "127.0.0.1", "port": 0, "n_ctx": n_ctx, "n_parallel": slots,
        "threads": 2, "gpu_layers": 0, "chat_template": None, "embeddings": False, "reasoning": None}
server = xllamacpp.Server(build_params(spec))
time.sleep(1.0)
print(json.dumps({"increase": process.memory_info().rss - before}))
"""


def main() -> None:
    from seekstack.embedded import embedded_model_path
    from seekstack.planner import make_plan, parse_hardware
    from seekstack.planner.catalog import spec_from_gguf

    spec = spec_from_gguf(embedded_model_path())
    hw = parse_hardware("cpu", {"ram_bytes": 24 * 2**30, "gpus": []})
    rows, worst = [], 0.0
    print(f"{'n_ctx':>7}{'slots':>6}{'predicted MiB':>15}{'measured MiB':>14}{'error':>8}")
    for n_ctx in (2048, 8192, 32768):
        for slots in (1, 4):
            out = subprocess.run([sys.executable, "-c", PROBE, str(n_ctx), str(slots)], capture_output=True, text=True, timeout=120)
            measured = json.loads(out.stdout.strip().splitlines()[-1])["increase"]
            # the engine's n_ctx is the KV cache of all slots together: context per slot = n_ctx / slots
            plan = make_plan(spec, hw, quant_name="file", context=n_ctx // slots, concurrency=slots, engine="llamacpp")
            error = plan.total_bytes / measured - 1
            worst = max(worst, abs(error))
            rows.append({"n_ctx": n_ctx, "slots": slots, "predicted": plan.total_bytes, "measured": measured, "error": error})
            print(f"{n_ctx:>7}{slots:>6}{plan.total_bytes / 2**20:>15.1f}{measured / 2**20:>14.1f}{error:>+8.1%}")
    verdict = "PASS" if worst <= 0.15 else "MISS"
    print(f"\n{verdict}  largest error {worst:.1%} (target ±15 %)")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "planner_memory.json").write_text(json.dumps({"rows": rows, "worst": worst}, indent=2))


if __name__ == "__main__":
    main()
