"""`seekstack bench` against the real server: sane numbers that agree with the server's own counters."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import SEEKSTACK
from test_metrics import delta, scrape

MODEL = "smollm2-135m"


def bench(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([*SEEKSTACK, "bench", *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def run(server, tmp_path_factory):
    """One closed-loop run of 12 requests at concurrency 3, with the server's counters around it."""
    tmp = tmp_path_factory.mktemp("bench")
    before = scrape(server)
    result = bench("--base-url", server.url + "/v1", "--api-key", server.key, "--model", MODEL, "-n", "12",
                   "--concurrency", "3", "--max-tokens", "12", "--slo", "ttft=60s,tpot=10s",
                   "-o", str(tmp / "a.json"), "--html", str(tmp / "a.html"))
    after = scrape(server)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((tmp / "a.json").read_text()), before, after, tmp, result.stdout


def test_every_request_completes_with_ttft_within_e2e(run):
    data, *_ = run
    summary, requests = data["summary"], data["requests"]
    assert summary["completed"] == 12 and summary["failed"] == 0 and summary["incomplete"] == 0
    for r in requests:
        assert 0 < r["ttft"] <= r["e2e"]
        assert r["output_tokens"] >= 1 and len(r["chunk_times"]) >= 1
        assert r["chunk_times"] == sorted(r["chunk_times"])
        assert r["start"] + r["ttft"] == pytest.approx(r["chunk_times"][0], abs=1e-5)
    for stat in ("mean", "p50", "p90", "p99"):
        assert summary["ttft_ms"][stat] <= summary["e2el_ms"][stat]
    assert summary["ttft_ms"]["p50"] <= summary["ttft_ms"]["p90"] <= summary["ttft_ms"]["p99"]


def test_throughput_is_consistent_with_token_counts_and_the_servers_counters(run):
    data, before, after, *_ = run
    summary, requests = data["summary"], data["requests"]
    total = sum(r["output_tokens"] for r in requests)
    assert summary["total_output_tokens"] == total
    # the server counted exactly the tokens the benchmark saw in usage
    assert delta(before, after, "seekstack_completion_tokens_total", model=MODEL) == total
    assert delta(before, after, "seekstack_prompt_tokens_total", model=MODEL) == summary["total_prompt_tokens"]
    span = max(r["start"] + r["e2e"] for r in requests) - min(r["start"] for r in requests)
    assert summary["duration_s"] == pytest.approx(span)
    assert summary["output_throughput"] == pytest.approx(total / span)
    assert summary["request_throughput"] == pytest.approx(12 / span)
    # generous SLOs: every request is good, so goodput equals request throughput
    assert summary["good_requests"] == 12 and summary["goodput"] == pytest.approx(summary["request_throughput"])
    # the over-time series carries every output token
    assert sum(p["tokens_per_s"] for p in summary["throughput_over_time"]) == pytest.approx(total)


def test_html_report_and_rich_summary(run):
    _, _, _, tmp, stdout = run
    page = (tmp / "a.html").read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") == 5 and "<polyline" in page
    assert "TTFT p99 (ms)" in page and "goodput" in stdout and "12/12" in stdout


def test_poisson_rate_jsonl_data_and_a_tight_slo(server, tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"prompt": "Say hi."}\n{"messages": [{"role": "user", "content": "你好"}], "max_tokens": 3}\n')
    result = bench("--base-url", server.url + "/v1", "--api-key", server.key, "--rate", "20", "-n", "6",
                   "--dataset-file", str(data), "--max-tokens", "4", "--slo", "ttft=0.001ms", "-o", str(tmp_path / "b.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "b.json").read_text())["summary"]
    assert summary["completed"] == 6
    assert summary["good_requests"] == 0 and summary["goodput"] == 0  # nobody answers in a microsecond


def test_compare_prints_ratios(run, tmp_path):
    data, *_ = run
    faster = json.loads(json.dumps(data))
    faster["summary"]["output_throughput"] *= 2
    faster["summary"]["ttft_ms"]["p50"] /= 4
    (tmp_path / "a.json").write_text(json.dumps(data))
    (tmp_path / "b.json").write_text(json.dumps(faster))
    result = subprocess.run([*SEEKSTACK, "bench", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")],
                            capture_output=True, text=True, timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert "2.000" in lines["output throughput (tok/s)"] and "0.250" in lines["TTFT p50 (ms)"]
    assert "1.000" in lines["request throughput (req/s)"]


def test_a_remote_target_is_refused_without_allow_remote():
    result = bench("--base-url", "http://192.0.2.10:8000/v1", "-n", "1", timeout=30)
    assert result.returncode == 1
    assert "not this machine" in result.stderr and "--allow-remote" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args,message", [
    (["--slo", "latency=5"], "is not NAME=VALUE"),
    (["--dataset", "poems"], "unknown dataset"),
    (["--base-url", "ftp://127.0.0.1/v1"], "is not an http(s) URL"),
])
def test_bad_options_get_one_line_and_the_fix(args, message):
    result = bench(*args, "-n", "1", timeout=30)
    assert result.returncode == 1 and message in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_jsonl_line_is_named(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "ok"}\n{"text": 1}\n')
    result = bench("--dataset-file", str(data), "-n", "1", timeout=30)
    assert result.returncode == 1 and "line 2" in result.stderr


def test_the_run_is_bounded_in_time(server, tmp_path):
    """--duration stops the run: what was still running is cancelled and reported as incomplete."""
    result = bench("--base-url", server.url + "/v1", "--api-key", server.key, "--model", MODEL, "-n", "200",
                   "--concurrency", "2", "--max-tokens", "400", "--ignore-eos", "--duration", "2",
                   "-o", str(tmp_path / "c.json"))
    summary = json.loads((tmp_path / "c.json").read_text())["summary"]
    assert summary["completed"] < 200 and summary["incomplete"] >= 1
    assert summary["completed"] + summary["failed"] + summary["incomplete"] <= 200
    assert result.returncode in (0, 1)  # 1 only when not one request finished in time, said in one line
    assert "Traceback" not in result.stderr


def settle(server, timeout: float = 30.0) -> None:
    """Wait until no request is in flight (an earlier test's cancelled streams end a little later)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = scrape(server)
        if not any(name == "seekstack_requests_in_flight" and value for (name, _), value in samples.items()):
            time.sleep(0.5)  # the finished request is counted just after its engine connection closes
            return
        time.sleep(0.1)


def test_warmup_requests_are_sent_but_not_counted(server, tmp_path):
    settle(server)
    before = scrape(server)
    result = bench("--base-url", server.url + "/v1", "--api-key", server.key, "--model", MODEL, "-n", "3",
                   "--warmup", "2", "--max-tokens", "4", "-o", str(tmp_path / "w.json"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "w.json").read_text())
    after = scrape(server)
    assert data["summary"]["completed"] == 3 and len(data["requests"]) == 3 and data["config"]["warmup"] == 2
    assert delta(before, after, "seekstack_requests_total", route="/v1/chat/completions", model=MODEL, status="200") == 5
