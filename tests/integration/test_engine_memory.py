"""Engine memory is bounded and planned (issue 15): llama.cpp's prompt cache is set from the config,
counted by the planner, and a soak of distinct prompts levels off within the plan."""

from __future__ import annotations

import psutil
import yaml

from conftest import Server


def test_engine_memory_levels_off_within_the_plan(tmp_path):
    """Every distinct prompt used to add its KV (~2 MiB here) to llama.cpp's 8 GiB host cache:
    1.0 -> 1.9 GiB over 5,000 requests. With prompt_cache_mib: 16 the engine stops growing."""
    from seekstack.config import load_settings
    from seekstack.planner.admission import admit

    model = {"name": "m", "source": "embedded", "context": 512, "slots": 2, "threads": 2, "prompt_cache_mib": 16}
    server = Server(tmp_path, {"models": [model]}).start()
    try:
        engine = psutil.Process(server.replicas()[0]["pid"])
        rss = []
        for i in range(1, 31):
            prompt = f"Request {i}: " + f"tell me about topic {i} and its history " * 12  # distinct, ~100 tokens
            r = server.http.post("/v1/chat/completions", json={"model": "m", "max_tokens": 1,
                                                               "messages": [{"role": "user", "content": prompt}]})
            assert r.status_code == 200
            if i in (10, 30):
                rss.append(engine.memory_info().rss)
    finally:
        server.stop()
    grown = rss[1] - rss[0]
    assert grown < 8 * 2**20, f"the engine grew {grown / 2**20:.1f} MiB over 20 distinct prompts"  # unbounded: ~40 MiB
    plan = admit(load_settings(server.config_path)).plans[0][1]
    assert plan.prompt_cache_bytes == 16 * 2**20
    assert rss[1] <= plan.total_bytes, f"engine RSS {rss[1] / 2**20:.0f} MiB above the plan's {plan.total_bytes / 2**20:.0f} MiB"
