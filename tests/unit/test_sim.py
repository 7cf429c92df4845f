"""The engine simulator's own model: KV capacity and queueing, load-dependent timing, output, faults,
and its stand-in command lines."""

from __future__ import annotations

import asyncio
import json

import pytest

from seekstack.sim import Faults, SimConfig, SimEngine
from seekstack.sim.cli import parse
from seekstack.sim.engine import Scheduler


def test_sequences_wait_for_a_slot_and_for_kv_room_in_order():
    async def main():
        s = Scheduler(slots=2, kv_tokens=100)
        await s.admit(60)
        await s.admit(30)                          # 90 of 100 in use, both slots taken
        third = asyncio.ensure_future(s.admit(20))
        fourth = asyncio.ensure_future(s.admit(5))
        await asyncio.sleep(0)
        queued = (s.running, s.queued, s.kv_used)
        s.release(30)                              # a slot frees, but 60 + 20 fits: the third goes in
        await asyncio.sleep(0)
        after_one = (third.done(), fourth.done(), s.running, s.kv_used)
        s.release(60)
        await asyncio.sleep(0)
        return queued, after_one, (fourth.done(), s.running, s.kv_used)

    queued, after_one, after_two = asyncio.run(main())
    assert queued == (2, 2, 90)
    assert after_one == (True, False, 2, 80)        # first in, first out: the fourth still waits for a slot
    assert after_two == (True, 2, 25)


def test_a_waiting_sequence_that_is_cancelled_leaves_the_queue():
    async def main():
        s = Scheduler(slots=1, kv_tokens=10)
        await s.admit(5)
        waiter = asyncio.ensure_future(s.admit(5))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        s.release(5)
        return s.queued, s.running, s.kv_used

    assert asyncio.run(main()) == (0, 0, 0)


def test_tokens_slow_down_as_more_sequences_run():
    engine = SimEngine(SimConfig(itl_ms=10, load_factor=0.1, max_num_seqs=8))
    alone = engine.token_delay("m")
    engine.scheduler.running = 5
    assert engine.token_delay("m") == pytest.approx(alone * 1.4)
    engine.set_faults(Faults(slow=3))
    assert engine.token_delay("m") == pytest.approx(alone * 1.4 * 3)


def test_output_is_deterministic_reasons_for_r1_and_respects_max_tokens():
    engine = SimEngine(SimConfig())
    a = engine.answer("deepseek-r1", "tell me about rivers", None)
    assert a == engine.answer("deepseek-r1", "tell me about rivers", None)
    assert "".join(a.content) == "Echo: tell me about rivers" and a.reasoning[0] == "Thinking"
    assert not engine.answer("qwen-7b", "x", None).reasoning
    short = engine.answer("qwen-7b", "one two three four", 2)
    assert short.tokens == 2 and short.finish_reason == "length"
    fixed = SimEngine(SimConfig(output_len=40)).answer("qwen-7b", "a b", None)
    assert fixed.tokens == 40
    seeded = SimEngine(SimConfig(mode="random", seed=1))
    assert seeded.answer("m", "p", None) == seeded.answer("m", "p", None) != \
        SimEngine(SimConfig(mode="random", seed=2)).answer("m", "p", None)


def test_faults_from_words_and_from_a_file_scoped_by_model(tmp_path):
    assert Faults.parse(["http500", "break_after=5", "slow=2.5"]) == Faults(http500=True, break_after=5, slow=2.5)
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        Faults.parse(["explode"])
    path = tmp_path / "faults.json"
    engine = SimEngine(SimConfig(faults_file=path))
    assert engine.faults("a") == Faults()
    path.write_text(json.dumps({"a": {"hang": True}, "*": {"slow": 2}}))
    assert engine.faults("a").hang and engine.faults("b").slow == 2


def test_stand_in_command_lines_are_parsed_like_the_engines(capsys):
    config, where = parse(["vllm", "serve", "/m", "--port", "9001", "--served-model-name", "r1", "--max-model-len", "2048",
                           "--max-num-seqs", "8", "--reasoning-parser", "deepseek_r1", "--tensor-parallel-size", "8"])
    assert (config.dialect, config.served_names, config.max_model_len, config.max_num_seqs, config.reasoning_parser) == \
        ("vllm", ("r1",), 2048, 8, True)
    assert where == {"host": "0.0.0.0", "port": 9001}
    config, _ = parse(["sglang.launch_server", "--model-path", "/m", "--tp-size", "8", "--enable-dp-attention",
                       "--api-key", "k"])
    assert config.dialect == "sglang" and config.api_key == "k"
    with pytest.raises(SystemExit) as info:
        parse(["vllm", "serve", "/m", "--tensor-paralel-size", "8"])  # a typo fails as in vLLM
    assert info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_the_exit_fault_ends_the_process_when_the_nth_request_arrives():
    import httpx

    from conftest import start_sim

    proc, port = start_sim("--fault", "exit_after=2")
    try:
        first = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                           json={"model": "sim", "messages": [{"role": "user", "content": "hi"}]})
        assert first.status_code == 200
        with pytest.raises(httpx.TransportError):
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                       json={"model": "sim", "messages": [{"role": "user", "content": "hi"}]})
        assert proc.wait(5) == 1
    finally:
        proc.kill()


def test_sim_info_shows_the_command_line_without_its_key():
    from seekstack.sim.server import _redacted

    assert _redacted(("sglang.launch_server", "--api-key=s3cret", "--tp-size", "8")) == \
        ["sglang.launch_server", "--api-key=<redacted>", "--tp-size", "8"]
    assert _redacted(("vllm", "serve", "m", "--api-key", "s3cret")) == ["vllm", "serve", "m", "--api-key", "<redacted>"]
