"""Each Backend's dialect: SSE framing, error translation, normalization, metrics, launch commands,
settings and the plugin hook — pure functions and real sockets, no engine needed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from seekstack.config import ModelConfig
from seekstack.engines.backend import Load, parse_prometheus
from seekstack.engines.http import EngineHTTP
from seekstack.engines.launch import LaunchSpec, spec_from_model
from seekstack.engines.llamacpp import LlamaCppBackend
from seekstack.engines.openai import OpenAIBackend
from seekstack.engines.sglang import SglangBackend, sglang_command
from seekstack.engines.vllm import VllmBackend, vllm_command
from seekstack.errors import ContextLengthError, EngineError, EngineUnavailableError, InvalidRequestError

from test_engine_http import Peer, read_request

HTTP = EngineHTTP(read_timeout=1)


def backend(cls, engine="llamacpp", **model):
    config = ModelConfig(name="deepseek-r1", **({"source": "embedded"} if engine == "llamacpp" else
                                                {"engine": engine} if isinstance(engine, dict) else {"path": "/m"}),
                         **model)
    return cls(HTTP, "unix:///nowhere.sock", config)


VLLM = backend(VllmBackend, {"kind": "vllm", "simulate": True}, path="/m")
SGLANG = backend(SglangBackend, {"kind": "sglang", "simulate": True}, path="/m")
LLAMACPP = backend(LlamaCppBackend)
OPENAI = backend(OpenAIBackend, {"kind": "openai", "url": "http://10.0.0.7:8000/v1", "upstream_model": "r1-upstream"})


# ------------------------------------------------------------------ SSE framing

def events_of(pieces: list[bytes]) -> list[bytes]:
    """Serve ``pieces`` as one chunked body and collect what EngineReply.events yields."""

    async def engine(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.005)  # each its own read
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def main(tmp):
        from seekstack.engines.backend import EngineReply

        async with Peer(tmp / "e.sock", engine) as url:
            http = EngineHTTP(read_timeout=5)
            reply = EngineReply(await http.request(url, "POST", "/v1/chat/completions", b"{}"))
            out = [event async for batch in reply.events() for event in batch]
            reply.close()
            await http.close()
            return out

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(main(Path(tmp)))


@pytest.mark.parametrize("end", [b"\n\n", b"\r\n\r\n", b"\r\r"])
def test_sse_events_with_any_line_end_even_split_between_pieces(end):
    body = b"".join(b"data: {\"n\": %d}" % i + end for i in range(3)) + b"data: [DONE]" + end
    for cut in range(1, len(body)):
        assert events_of([body[:cut], body[cut:]]) == [b'data: {"n": 0}', b'data: {"n": 1}', b'data: {"n": 2}',
                                                        b"data: [DONE]"], cut


def test_sse_comments_event_names_and_multiline_data_are_framed_as_one_data_event():
    body = b": ping\n\nevent: message\nid: 7\ndata: {\"a\":\ndata: 1}\n\ndata: [DONE]\n\n"
    assert events_of([body]) == [b'data: {"a":\n1}', b"data: [DONE]"]


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("backend_, status, body", [
    (VLLM, 400, b'{"object":"error","message":"This model\'s maximum context length is 4096 tokens. However, you requested '
                b'5000 tokens (4000 in the messages, 1000 in the completion).","type":"BadRequestError","param":null,"code":400}'),
    (VLLM, 400, b'{"error":{"message":"\'max_tokens\' is too large: 1000. This model\'s maximum context length is 4096 tokens '
                b'and your request has 3500 input tokens","type":"BadRequestError","code":400}}'),
    (SGLANG, 400, b'{"object":"error","message":"The input (5000 tokens) is longer than the model\'s context length '
                  b'(4096 tokens).","type":"BadRequestError","param":null,"code":400}'),
    (OPENAI, 400, b'{"error":{"message":"This model\'s maximum context length is 4096 tokens.","type":"invalid_request_error",'
                  b'"param":"messages","code":"context_length_exceeded"}}'),
    (LLAMACPP, 400, b'{"error":{"code":400,"message":"the request exceeds the available context size","type":'
                    b'"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":4096}}'),
])
def test_each_dialects_context_error_becomes_context_length_exceeded(backend_, status, body):
    err = backend_.translate_error(status, body)
    assert isinstance(err, ContextLengthError) and err.code == "context_length_exceeded"


@pytest.mark.parametrize("status, body, kind, words", [
    (500, b'{"object":"error","message":"CUDA error","type":"InternalServerError","code":500}', EngineError, "(HTTP 500): CUDA error"),
    (502, b"<html>Bad Gateway</html>", EngineError, "(HTTP 502): <html>Bad Gateway</html>"),
    (401, b'{"detail":"Unauthorized"}', EngineError, "refused seekstack's credentials"),
    (404, b'{"object":"error","message":"The model `x` does not exist."}', EngineError, "does not serve this model"),
    (429, b'{"error":{"message":"too many"}}', EngineUnavailableError, "overloaded"),
    (422, b'{"detail":[{"msg":"bad"}]}', InvalidRequestError, "bad"),
])
def test_engine_errors_are_translated_once_into_the_tree(status, body, kind, words):
    err = VLLM.translate_error(status, body)
    assert type(err) is kind and words in err.message


# ------------------------------------------------------------------ normalize, outgoing

def test_vllm_reasoning_field_is_deepseeks_reasoning_content():
    chunk = {"choices": [{"index": 0, "delta": {"reasoning": "hmm", "content": None}}]}
    assert VLLM.normalize(chunk)["choices"][0]["delta"] == {"reasoning_content": "hmm", "content": None}
    whole = {"choices": [{"message": {"reasoning": "r", "reasoning_content": "kept", "content": "a"}}]}
    assert OPENAI.normalize(whole)["choices"][0]["message"] == {"reasoning_content": "kept", "content": "a"}
    assert b'"reasoning"' in VLLM.rewrite_markers  # only chunks holding it leave the fast path


def test_llamacpp_timings_are_dropped_and_openai_servers_get_their_model_id():
    assert LLAMACPP.normalize({"choices": [], "timings": {"n": 1}}) == {"choices": []}
    assert OPENAI.outgoing({"model": "deepseek-r1", "messages": []})["model"] == "r1-upstream"
    assert OPENAI.base_url == "unix:///nowhere.sock"  # given by the supervisor: the settings' url without /v1
    assert OPENAI.model.engine.url == "http://10.0.0.7:8000"


def test_capabilities_are_data_per_dialect():
    assert LLAMACPP.capabilities.counts_tokens and LLAMACPP.capabilities.cancels_only_streams
    assert VLLM.capabilities.counts_tokens and VLLM.capabilities.native_reasoning
    assert not SGLANG.capabilities.counts_tokens and SGLANG.capabilities.native_reasoning
    assert not OPENAI.capabilities.counts_tokens and not OPENAI.capabilities.native_reasoning  # the gateway splits


# ------------------------------------------------------------------ load

PAGE = """# HELP vllm:num_requests_waiting Waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="r1"} 3.0
vllm:num_requests_waiting{engine="1",model_name="r1"} 2.0
vllm:num_requests_running{engine="0",model_name="r1"} 7
vllm:kv_cache_usage_perc{engine="0",model_name="r1"} 0.42
vllm:kv_cache_usage_perc_other 9
"""


def test_prometheus_gauges_are_summed_over_label_sets():
    assert parse_prometheus(PAGE, {"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"}) \
        == {"vllm:num_requests_waiting": 5.0, "vllm:num_requests_running": 7.0, "vllm:kv_cache_usage_perc": 0.42}


def test_load_names_are_each_engines_own():
    assert VllmBackend.load_metrics == {"queued": "vllm:num_requests_waiting", "running": "vllm:num_requests_running",
                                        "kv_use": "vllm:kv_cache_usage_perc"}
    assert SglangBackend.load_metrics["kv_use"] == "sglang:token_usage"
    assert LlamaCppBackend.load_metrics == {"queued": "llamacpp:requests_deferred", "running": "llamacpp:requests_processing"}
    assert Load().to_json() == {"queued": None, "running": None, "kv_use": None}


# ------------------------------------------------------------------ launch

R1_671B = LaunchSpec(model="/models/DeepSeek-R1", served_name="deepseek-r1", context=32768, max_seqs=64,
                     tensor_parallel=8, reasoning="deepseek_r1", api_key="k")


def test_vllm_launch_for_r1_on_8xh200():
    argv = vllm_command(R1_671B)
    assert argv[:3] == ["vllm", "serve", "/models/DeepSeek-R1"]
    joined = " ".join(argv)
    for part in ("--tensor-parallel-size 8", "--max-model-len 32768", "--max-num-seqs 64", "--served-model-name deepseek-r1",
                 "--reasoning-parser deepseek_r1", "--enable-prefix-caching", "--gpu-memory-utilization 0.9"):
        assert part in joined
    assert "k" not in argv  # the key goes in VLLM_API_KEY


def test_a_replica_over_two_hosts_is_tp_inside_and_pp_across_on_vllm_and_nnodes_on_sglang():
    from dataclasses import replace

    two = replace(R1_671B, tensor_parallel=16, nodes=2)
    joined = " ".join(vllm_command(two))
    assert "--tensor-parallel-size 8" in joined and "--pipeline-parallel-size 2" in joined and "ray" in joined
    joined = " ".join(sglang_command(replace(two, data_parallel=2, dp_attention=True, expert_parallel=16)))
    for part in ("--tp-size 16", "--nnodes 2", "--dp-size 2", "--enable-dp-attention", "--ep-size 16",
                 "--reasoning-parser deepseek-r1", "--enable-metrics", "--api-key=k"):
        assert part in joined


def test_model_entry_to_launch_dp_attention_only_for_deepseek_mla():
    r1 = ModelConfig(name="deepseek-r1", path="/m", engine={"kind": "sglang", "data_parallel": 2, "tensor_parallel": 8})
    distill = ModelConfig(name="deepseek-r1-distill-qwen-7b", path="/m", engine={"kind": "sglang", "data_parallel": 2})
    assert spec_from_model(r1, port=1, api_key=None).dp_attention
    assert not spec_from_model(distill, port=1, api_key=None).dp_attention  # a Qwen model: GQA, not MLA


def test_every_flag_seekstack_emits_is_one_the_engines_parsers_know():
    """The simulator's parsers list the engines' real flags; a typo here would fail a real launch."""
    from seekstack.sim.cli import sglang_parser, vllm_parser
    from dataclasses import replace

    wide = replace(R1_671B, tensor_parallel=16, nodes=2, data_parallel=2, dp_attention=True, expert_parallel=16,
                   quantization="fp8", kv_cache_dtype="fp8", mem_fraction_static=0.85, prefix_caching=False)
    vllm_parser().parse_args(vllm_command(wide)[2:])
    sglang_parser().parse_args(sglang_command(wide)[3:])
    assert "--is-embedding" not in sglang_command(wide)


def test_sglang_serves_embedding_models_and_rerankers_in_its_embedding_mode():
    from seekstack.sim.cli import sglang_parser

    for task in ({"embeddings": True}, {"rerank": True}):
        model = ModelConfig(name="bge", path="/m", engine={"kind": "sglang"}, **task)
        argv = sglang_command(spec_from_model(model, port=1, api_key=None))
        assert "--is-embedding" in argv and sglang_parser().parse_args(argv[3:]).is_embedding


# ------------------------------------------------------------------ settings and plugins

def test_engine_settings_by_name_mapping_and_the_old_remote_form():
    assert ModelConfig(name="a", source="embedded").engine.kind == "llamacpp"
    old = ModelConfig(name="b", engine="remote", url="http://h:8000")
    assert old.engine.kind == "openai" and old.engine.url == "http://h:8000" and not old.engine.launched
    external_vllm = ModelConfig(name="c", path="/m", engine={"kind": "vllm", "url": "http://gpu-7:8000"})
    assert not external_vllm.engine.launched  # a vLLM another host runs, spoken to in vLLM's dialect
    with pytest.raises(ValueError, match="unknown engine 'tgi'; installed engines: llamacpp, openai, sglang, vllm"):
        ModelConfig(name="d", path="/m", engine="tgi")
    with pytest.raises(ValueError, match="tensor_parallel"):
        ModelConfig(name="e", path="/m", engine={"kind": "vllm", "tensor_parallel": 0})


def test_a_third_party_engine_registers_through_the_entry_point_group(tmp_path):
    """A package that seekstack does not know adds an engine kind without editing seekstack."""
    (tmp_path / "seekstack_echo.py").write_text(textwrap.dedent('''
        from typing import Literal
        from seekstack.engines import Backend, Capabilities, EngineKind, register_engine
        from seekstack.engines.settings import EngineSettings

        class EchoSettings(EngineSettings):
            kind: Literal["echo"] = "echo"
            url: str = "http://127.0.0.1:1"

        class EchoBackend(Backend):
            kind = "echo"
            def build_capabilities(self, model):
                return Capabilities(context_length=model.context)

        register_engine(EngineKind("echo", EchoSettings, EchoBackend, summary="a plugin"))
    '''))
    dist = tmp_path / "seekstack_echo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: seekstack-echo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[seekstack.engines]\necho = seekstack_echo\n")
    check = ("from seekstack.config import ModelConfig\n"
             "from seekstack.engines import engine_kind\n"
             "m = ModelConfig(name='x', engine={'kind': 'echo'})\n"
             "print(m.engine.kind, engine_kind('echo').summary, m.engine.launched)\n")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["echo", "a", "plugin", "False"]


def test_config_check_doctor_and_serve_say_the_same_about_a_missing_engine_package(tmp_path):
    from seekstack.config import Settings, check_settings
    from seekstack.doctor import engines_check
    from seekstack.engines.registry import missing_package

    settings = Settings(state_dir=tmp_path, models=[{"name": "r1", "path": str(tmp_path), "engine": "vllm"}])
    sentence = missing_package(settings.models[0].engine)
    assert sentence and "pip install 'seekstack[vllm]'" in sentence
    assert any(sentence in p for p in check_settings(settings))
    doctor = next(c for c in engines_check(settings) if c.detail.startswith("vllm"))
    assert doctor.status == "FAIL" and sentence.partition(" — ")[2] in doctor.fix
    from seekstack.errors import ConfigError
    from seekstack.supervisor import Supervisor

    with pytest.raises(ConfigError) as info:
        Supervisor(settings, HTTP)
    assert info.value.message.removeprefix("model r1: ") in sentence and info.value.fix in sentence


def test_an_external_engines_key_comes_from_the_environment_or_a_private_file(tmp_path, monkeypatch):
    from seekstack.engines.keys import read_api_key
    from seekstack.engines.settings import parse_engine
    from seekstack.errors import ConfigError

    key_file = tmp_path / "k"
    key_file.write_text("secret\n")
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="can be read by other users") as info:
        read_api_key(parse_engine({"kind": "openai", "url": "http://h", "api_key_file": str(key_file)}))
    assert info.value.fix == f"chmod 600 {key_file}" and "secret" not in info.value.message
    key_file.chmod(0o600)
    assert read_api_key(parse_engine({"kind": "openai", "url": "http://h", "api_key_file": str(key_file)})) == "secret"
    monkeypatch.delenv("ENGINE_KEY", raising=False)
    with pytest.raises(ConfigError, match="ENGINE_KEY is not set"):
        read_api_key(parse_engine({"kind": "vllm", "url": "http://h", "api_key_env": "ENGINE_KEY"}))
    monkeypatch.setenv("ENGINE_KEY", "k2")
    assert read_api_key(parse_engine({"kind": "vllm", "url": "http://h", "api_key_env": "ENGINE_KEY"})) == "k2"


def test_an_engine_that_never_ends_an_event_cannot_fill_the_gateways_memory():
    from seekstack.engines.backend import MAX_EVENT_BYTES
    from seekstack.engines.http import EngineStreamError

    endless = [b"data: " + b"x" * 65536] * (MAX_EVENT_BYTES // 65536 + 2)  # no blank line, ever
    with pytest.raises(EngineStreamError, match="longer than"):
        events_of(endless)
