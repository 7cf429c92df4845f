"""`seekstack plan` and admission control in `seekstack serve`, through the real commands."""

from __future__ import annotations

import json
import os
import subprocess

import yaml

from conftest import SEEKSTACK, Server
from seekstack.embedded import embedded_model_path


def run(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([*SEEKSTACK, *args], capture_output=True, text=True, timeout=timeout, env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"})


def test_plan_json_for_a_catalog_model():
    result = run("plan", "deepseek-r1", "--quant", "fp8", "--hardware", "8xH100", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    plan = data["plan"]
    assert plan["fits"] is False and "16 × H100" in plan["smallest_fix"]
    assert plan["kv_per_token_bytes"] == 70272 and round(plan["weights_bytes"] / 1e9) == 700
    assert {row["quantization"] for row in data["quantizations"]} >= {"bf16", "fp8", "q4_k_m", "iq1_s"}


def test_plan_table_for_the_embedded_file_on_this_machine():
    result = run("plan", str(embedded_model_path()), "--context", "2048")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "q4_1" in out and "fits" in out and "the file's tensor table" in out and "23,040 B/token" in out
    assert "decode ≤" in out and "Quantizations" in out


def test_plan_refuses_bad_input_in_one_line(tmp_path):
    for args, message in [(["gpt-5"], "not in the model catalog"), (["deepseek-r1", "--hardware", "8xV100"], "unknown GPU"),
                          (["deepseek-r1", "--quant", "q3_weird"], "unknown quantization")]:
        result = run("plan", *args)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00")
    result = run("plan", str(bad))
    assert result.returncode == 1 and "not a complete GGUF file" in result.stderr


def test_serve_refuses_models_that_do_not_fit_with_numbers_and_the_smallest_fix(tmp_path):
    config = tmp_path / "tight.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "supervisor": {"memory_budget_gb": 0.6},
                                      "models": [{"name": "m", "source": "embedded", "context": 4096, "slots": 4, "replicas": 2,
                                                  "prompt_cache_mib": 16}]}))
    result = run("serve", "--config", str(config), "--port", "0", timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the models need 1.17 GiB but 0.56 GiB is available" in result.stderr
    assert "m: 2 × (0.09 weights + 0.35 KV for context 4096 × 4 slots + 0.13 overhead + 0.02 prompt cache)" in result.stderr
    assert "set context: 512 (or fewer slots) for m" in result.stderr and "--force" in result.stderr
    assert not (tmp_path / "state" / "admin.key").exists()  # refused before anything started
    # the fix it names is enough
    from seekstack.config import load_settings
    from seekstack.planner.admission import admit

    fixed = yaml.safe_load(config.read_text())
    fixed["models"][0]["context"] = 512
    config.write_text(yaml.safe_dump(fixed))
    assert admit(load_settings(config)).fits


def test_serve_force_starts_anyway_with_a_warning(tmp_path):
    server = Server(tmp_path, {"supervisor": {"memory_budget_gb": 0.1},
                               "models": [{"name": "m", "source": "embedded", "context": 1024, "slots": 1}]})
    server.extra_args = ["--force"]
    server.start()
    try:
        r = server.http.post("/v1/chat/completions", json={"model": "m", "max_tokens": 2,
                                                           "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200
    finally:
        server.stop()
    assert "warning: --force: the models need" in server.log_path.read_text()


def doctor(config) -> tuple[int, dict[str, list[dict]]]:
    result = run("doctor", "--config", str(config), "--json")
    rows: dict[str, list[dict]] = {}
    for row in json.loads(result.stdout):
        rows.setdefault(row["name"], []).append(row)
    return result.returncode, rows


def test_doctor_on_this_machine_says_no_gpu_and_checks_the_model(tmp_path):
    config = tmp_path / "ok.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "s"), "server": {"port": 0}}))
    code, rows = doctor(config)
    assert rows["gpu"][0]["status"] == "OK" and rows["gpu"][0]["detail"].startswith("no GPU")
    assert "cores" in rows["cpu"][0]["detail"] and "GiB RAM" in rows["cpu"][0]["detail"]
    assert rows["model"][0]["status"] == "OK" and "GGUF v3 llama, 272 tensors" in rows["model"][0]["detail"]
    assert rows["memory"][0]["status"] == "OK" and "RAM available now" in rows["memory"][0]["detail"]


def test_doctor_fails_a_broken_model_file_too_little_memory_and_a_gpu_engine_without_gpu(tmp_path):
    broken = tmp_path / "cut.gguf"
    broken.write_bytes(embedded_model_path().read_bytes()[:4096])  # an interrupted download
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "s"), "server": {"port": 0},
                                      "supervisor": {"memory_budget_gb": 0.05},
                                      "models": [{"name": "cut", "path": str(broken)},
                                                 {"name": "ok", "source": "embedded"},
                                                 {"name": "big", "engine": "vllm", "path": str(tmp_path)}]}))
    code, rows = doctor(config)
    assert code == 2
    cut = next(r for r in rows["model"] if r["detail"].startswith("cut"))
    assert cut["status"] == "FAIL" and "not a complete GGUF file" in cut["detail"] and cut["fix"]
    assert rows["gpu"][0]["status"] == "FAIL" and "vllm needs an NVIDIA GPU" in rows["gpu"][0]["detail"]


def test_plan_tco_in_json_and_text():
    result = run("plan", "deepseek-r1-distill-qwen-32b", "--hardware", "2xA100-80G", "--tco", "--years", "3",
                 "--cloud-price", "3.0", "--json")
    assert result.returncode == 0, result.stderr
    cost = json.loads(result.stdout)["tco"]
    assert cost["cloud_usd"] == 2 * 8760 * 3 * 3.0 and cost["gpus"] == 2
    text = run("plan", "deepseek-r1-distill-qwen-32b", "--hardware", "2xA100-80G", "--tco").stdout
    assert "TCO over 3 years" in text and "cloud = 2 GPUs × 8760 h × 3 y" in text and "on-prem = hardware + power" in text


def test_serve_derives_context_from_the_plan_when_it_is_not_set(tmp_path):
    """No context, slots or prompt cache in the config and 0.35 GB to spend: 4096 × 4 with 256 MiB of
    prompt cache would need 0.80 GiB, so the planner gives up the prompt cache, then halves the context
    until it fits (1024), and the engine really runs with it."""
    server = Server(tmp_path, {"supervisor": {"memory_budget_gb": 0.35}, "models": [{"name": "m", "source": "embedded"}]})
    server.start()
    try:
        r = server.http.post("/v1/chat/completions", json={"model": "m", "max_tokens": 1024,
                                                           "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 400 and "the model's context length is 1024 tokens" in r.json()["error"]["message"]
        metrics = server.http.get("/metrics").text
        assert 'seekstack_replica_slots{engine="llamacpp",model="m",replica="0"} 4.0' in metrics
    finally:
        server.stop()
    assert "m: context 1024 × 4 slots, prompt cache 0 MiB (chosen from the memory plan" in server.log_path.read_text()


def test_plan_a_model_in_the_store_by_name(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state")}))
    assert run("import", str(embedded_model_path()), "--name", "smol", "--config", str(config)).returncode == 0
    result = run("plan", "smol", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)["plan"]
    assert plan["model"] == "smol@1" and plan["weights_source"] == "the file's tensor table" and plan["quantization"] == "q4_1"


def test_tco_reproduces_the_seed_worked_example():
    """The seed's 3-year comparison (shared/reference/deepseek-facts.md): 2 GPUs at 5 USD/GPU-hour for 7,200 h a
    year against a 58,700 USD server with 10,000 USD of power and upkeep: 216,000 vs 68,700 USD."""
    result = run("plan", "deepseek-r1", "--hardware", "2xA100-80G", "--tco", "--years", "3", "--hours-per-year", "7200",
                 "--cloud-price", "5", "--capex", "58700", "--opex", "10000", "--json")
    assert result.returncode == 0, result.stderr
    cost = json.loads(result.stdout)["tco"]
    assert round(cost["cloud_usd"]) == 216_000 and round(cost["on_prem_usd"]) == 68_700
    assert round(cost["on_prem_usd"] / cost["cloud_usd"], 3) == 0.318
    text = run("plan", "deepseek-r1", "--hardware", "2xA100-80G", "--tco", "--years", "3", "--hours-per-year", "7200",
               "--cloud-price", "5", "--capex", "58700", "--opex", "10000")
    assert "cloud 216,000 USD, on-prem 68,700 USD" in text.stdout


def test_ports_a_port_in_use_is_one_line_and_seekstacks_own_port_is_ok(tmp_path):
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    busy = holder.getsockname()[1]
    try:
        config = tmp_path / "busy.yaml"
        config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "busy-state")}))
        result = run("serve", "--config", str(config), "--port", str(busy), timeout=60)
        assert result.returncode == 1 and "Traceback" not in result.stderr and "[Errno" not in result.stderr
        assert f"127.0.0.1:{busy} is already in use by PID {os.getpid()}" in result.stderr
        assert "--port N (or SEEKSTACK_SERVER__PORT=N)" in result.stderr
    finally:
        holder.close()
    server = Server(tmp_path, {"models": [{"name": "m", "source": "embedded", "context": 256, "slots": 1}]}).start()
    try:
        code, rows = doctor(server.config_path)  # the config says port 8800; serve runs on another: still found
        assert rows["port"][0]["status"] == "OK" and f"PID {server.proc.pid}" in rows["port"][0]["detail"]
        models = run("ps", "--config", str(server.config_path), "--json")  # talks to the running server's port
        assert models.returncode == 0 and json.loads(models.stdout)[0]["model"] == "m", models.stderr
    finally:
        server.stop()


def test_a_context_longer_than_the_model_was_trained_for_is_refused_unless_rope_scaling_says_so(tmp_path):
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "long-state"),
                                      "models": [{"name": "m", "source": "embedded", "context": 1000000}]}))
    for command in (("config", "check", str(config)), ("serve", "--config", str(config), "--port", "0")):
        result = run(*command, timeout=60)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "context: 1000000 is longer than the 8192 tokens the model was trained for" in result.stderr
        assert "rope_scaling" in result.stderr
    server = Server(tmp_path, {"models": [{"name": "m", "source": "embedded", "context": 16384, "slots": 1,
                                           "rope_scaling": "yarn", "prompt_cache_mib": 0}]}).start()
    try:
        r = server.http.post("/v1/chat/completions", json={"model": "m", "max_tokens": 12000, "grammar": 'root ::= "ok"',
                                                           "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "ok"  # 12,000 tokens fit
        spec = [json.loads(a) for a in psutil_cmdline(server.replicas()[0]["pid"]) if a.startswith("{")][0]
        assert spec["rope_scaling"] == "yarn" and spec["rope_scale"] == 0.5
    finally:
        server.stop()


def psutil_cmdline(pid: int) -> list[str]:
    import psutil

    return psutil.Process(pid).cmdline()


def test_doctor_says_which_engines_are_usable_here_and_how_to_get_the_others(tmp_path):
    config = tmp_path / "gpu.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "s"), "server": {"port": 0},
                                      "models": [{"name": "big", "engine": "vllm", "path": str(tmp_path)}]}))
    code, rows = doctor(config)
    by_engine = {r["detail"].split(":")[0]: r for r in rows["engine"]}
    assert by_engine["llamacpp"]["status"] == "OK" and "usable here" in by_engine["llamacpp"]["detail"]
    import importlib.util

    vllm = by_engine["vllm"]
    if importlib.util.find_spec("vllm") is None:  # as on CI: the config uses an engine this machine lacks
        assert vllm["status"] == "FAIL" and "not installed" in vllm["detail"] and "the config uses it" in vllm["detail"]
        assert vllm["fix"].startswith("pip install 'seekstack[vllm]' on a machine with an NVIDIA GPU")
    if importlib.util.find_spec("sglang") is None:
        assert by_engine["sglang"]["status"] == "OK" and "pip install 'seekstack[sglang]'" in by_engine["sglang"]["fix"]
        text = run("doctor", "--config", str(config))
        assert "seekstack[sglang]" in text.stdout  # brackets survive the table
