"""The conformance suite: one set of tests run against every engine adapter, through a real
`seekstack serve` and the official `openai` client.

- ``llamacpp``: real llama.cpp (xllamacpp) with the embedded model;
- ``llamacpp-sim``, ``vllm``, ``sglang``: the adapters' own launch, with `seekstack sim` standing in
  for the engine (``engine.simulate: true``: the sim parses the engine's real command line);
- ``openai``: a plain OpenAI-compatible server that seekstack does not start (`seekstack sim
  --dialect openai`, with CRLF line ends, an API key in a 0600 file and its own model ids).

The simulated adapters speak DeepSeek-R1 (reasoning); faults are set through the simulators'
faults file. Real llama.cpp with the embedded model has no reasoning and no faults to inject.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import Server, engine_request, start_sim
from hfdir import make_hf_dir

ADAPTERS = ["llamacpp", "llamacpp-sim", "vllm", "sglang", "openai"]
# On a GPU host, bench/gpu_check.sh runs this suite with a real vLLM or SGLang in place of the simulator.
REAL = os.environ.get("SEEKSTACK_CONFORMANCE_REAL", "")            # "vllm" | "sglang" | ""
REAL_MODEL = os.environ.get("SEEKSTACK_CONFORMANCE_MODEL", "")     # a local model folder for it
SIMULATED = [a for a in ADAPTERS[1:] if a != REAL]
CONTEXT = 512

CHAT = {"llamacpp": "smollm2-real", "llamacpp-sim": "deepseek-r1-llamacpp-sim", "vllm": "deepseek-r1-vllm-sim",
        "sglang": "deepseek-r1-sglang-sim", "openai": "deepseek-r1-openai"}
if REAL:  # a small real model is no DeepSeek-R1: a name that does not ask for R1's reasoning parser
    CHAT[REAL] = f"small-{REAL}"
EMBED = {adapter: name + "-embed" for adapter, name in CHAT.items() if adapter != REAL}  # a chat model embeds nothing
# The model id each engine knows the chat model by (what a faults file names).
ENGINE_ID = {**CHAT, "openai": "upstream-r1"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    faults = tmp / "faults.json"
    faults.write_text("{}")
    key_file = tmp / "upstream.key"
    key_file.write_text("upstream-secret\n")
    key_file.chmod(0o600)
    hf = {name: str(make_hf_dir(tmp / name)) for name in (CHAT["vllm"], CHAT["sglang"])}
    upstream, port = start_sim("--dialect", "openai", "--model", "upstream-r1", "--model", "upstream-embed", "--crlf",
                               "--api-key-file", str(key_file), "--max-model-len", str(CONTEXT), "--faults-file", str(faults))
    remote = {"kind": "openai", "url": f"http://127.0.0.1:{port}", "api_key_file": str(key_file)}

    def entries(adapter: str, name: str, **extra) -> dict:
        base = {"name": name, "context": CONTEXT, "slots": 4, **extra}
        if adapter == "llamacpp":
            return {**base, "source": "embedded"}
        if adapter == "llamacpp-sim":
            return {**base, "source": "embedded", "engine": {"kind": "llamacpp", "simulate": True}}
        if adapter == REAL:
            return {**base, "path": REAL_MODEL, "engine": {"kind": adapter}}
        if adapter in ("vllm", "sglang"):
            return {**base, "path": hf[CHAT[adapter]], "engine": {"kind": adapter, "simulate": True}}
        upstream_model = "upstream-embed" if extra.get("embeddings") else "upstream-r1"
        return {**base, "engine": {**remote, "upstream_model": upstream_model}}

    models = [entries(a, CHAT[a]) for a in ADAPTERS] + [entries(a, name, embeddings=True) for a, name in EMBED.items()]
    srv = Server(tmp, {"models": models, "scheduler": {"timeout": 2.5},
                       "supervisor": {"backoff_initial": 0.2, "backoff_max": 0.5}})
    srv.env = {"SEEKSTACK_SIM_FAULTS": str(faults)}
    srv.start(timeout=900 if REAL else 120)  # a real engine loads its weights first
    srv.faults_file = faults
    srv.hf = hf
    srv.client = openai.OpenAI(base_url=srv.url + "/v1", api_key=srv.key, max_retries=0, timeout=30)
    yield srv
    srv.stop()
    upstream.terminate()
    upstream.wait(10)


def set_faults(fleet, adapter: str | None = None, **faults) -> None:
    fleet.faults_file.write_text(json.dumps({ENGINE_ID[adapter]: faults} if adapter else {}))
    time.sleep(0.06)  # the simulators look at the file's mtime on each request


@pytest.fixture
def faults(fleet):
    yield lambda adapter, **f: set_faults(fleet, adapter, **f)
    set_faults(fleet)
    # an engine a fault got ejected takes traffic again after its ejection time and a passing
    # health check: the next test starts when every replica does
    deadline = time.monotonic() + 15
    while any(r["state"] in ("ejected", "starting", "restarting") for r in fleet.replicas()) and time.monotonic() < deadline:
        time.sleep(0.05)


def replica(fleet, name: str) -> dict:
    return next(r for r in fleet.replicas() if r["model"] == name)


def sim_info(fleet, adapter: str) -> dict:
    if adapter == "openai":
        url = next(m["engine"]["url"] for m in _config_models(fleet) if m["name"] == CHAT["openai"])
    else:
        url = replica(fleet, CHAT[adapter])["base_url"]
    return engine_request(url, "GET", "/sim/info").json()


def _config_models(fleet) -> list[dict]:
    import yaml

    return yaml.safe_load(fleet.config_path.read_text())["models"]


# ------------------------------------------------------------------ the contract

@pytest.mark.parametrize("adapter", ADAPTERS)
def test_chat_answer_and_stream_agree(fleet, adapter, schema):
    client, model = fleet.client, CHAT[adapter]
    ask = dict(model=model, messages=[{"role": "user", "content": "Name three colours."}], max_tokens=24,
               temperature=0, seed=7)
    raw = fleet.http.post("/v1/chat/completions", json=ask)
    schema("CreateChatCompletionResponse", raw.json())
    whole = client.chat.completions.create(**ask)
    assert whole.model == model
    message = whole.choices[0].message
    assert message.content and whole.choices[0].finish_reason in ("stop", "length")
    usage = whole.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    pieces, reasoning, usages = [], [], []
    for chunk in client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}):
        assert chunk.model == model
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
    assert "".join(pieces) == message.content
    assert len(usages) == 1 and usages[0].completion_tokens == usage.completion_tokens  # counted once
    if adapter in SIMULATED:  # DeepSeek-R1 speakers: reasoning apart from the answer, streamed and not
        assert message.reasoning_content and message.reasoning_content.startswith("Thinking about")
        assert "<think>" not in message.content and "Thinking" not in message.content
        assert "".join(reasoning) == message.reasoning_content
    else:  # the embedded model does not reason: nothing may appear there
        assert not getattr(message, "reasoning_content", None) and not "".join(reasoning)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_completions_answer_and_stream_agree(fleet, adapter):
    client, model = fleet.client, CHAT[adapter]
    whole = client.completions.create(model=model, prompt="One, two, three,", max_tokens=12, temperature=0, seed=3)
    assert whole.model == model and whole.choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=model, prompt="One, two, three,", max_tokens=12, temperature=0, seed=3, stream=True) if c.choices)
    assert streamed == whole.choices[0].text
    assert whole.usage.completion_tokens > 0


@pytest.mark.parametrize("adapter", list(EMBED))
def test_embeddings(fleet, adapter):
    reply = fleet.client.embeddings.create(model=EMBED[adapter], input=["a first text", "a second one"])
    assert reply.model == EMBED[adapter]
    assert [d.index for d in reply.data] == [0, 1]
    assert len(reply.data[0].embedding) > 8 and reply.data[0].embedding != reply.data[1].embedding
    assert reply.usage.prompt_tokens > 0


@pytest.mark.parametrize("adapter", SIMULATED)
def test_deepseek_r1_sampling_defaults_reach_the_engine(fleet, adapter):
    fleet.client.chat.completions.create(model=CHAT[adapter], messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    sent = sim_info(fleet, adapter)["last_request"]
    assert (sent["temperature"], sent["top_p"]) == (0.6, 0.95)  # DeepSeek's published R1 defaults
    fleet.client.chat.completions.create(model=CHAT[adapter], messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                         temperature=0.2)
    assert sim_info(fleet, adapter)["last_request"]["temperature"] == 0.2  # the client's own value wins


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_prompt_longer_than_the_context_is_400_context_length_exceeded(fleet, adapter):
    long = " ".join(f"word{i}" for i in range(CONTEXT + 50))  # one token per word in the simulator; more in llama.cpp
    with pytest.raises(openai.BadRequestError) as info:
        fleet.client.chat.completions.create(model=CHAT[adapter], messages=[{"role": "user", "content": long}], max_tokens=8)
    assert info.value.status_code == 400
    assert info.value.body["code"] == "context_length_exceeded", info.value.body
    assert str(CONTEXT) in info.value.body["message"]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_unknown_model_is_404_naming_the_ones_there_are(fleet, adapter):
    with pytest.raises(openai.NotFoundError) as info:
        fleet.client.chat.completions.create(model=CHAT[adapter] + "-nope", messages=[{"role": "user", "content": "Hi"}])
    assert info.value.body["code"] == "model_not_found" and CHAT[adapter] in info.value.body["message"]


@pytest.mark.parametrize("adapter", SIMULATED)
def test_an_engine_500_is_a_502_in_openai_error_json(fleet, adapter, faults):
    faults(adapter, http500=True)
    for stream in (False, True):
        r = fleet.http.post("/v1/chat/completions", json={"model": CHAT[adapter], "stream": stream,
                                                          "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 502, r.text
        err = r.json()["error"]
        assert err["code"] == "engine_error" and err["type"] == "server_error" and "HTTP 500" in err["message"]


@pytest.mark.parametrize("adapter", SIMULATED)
def test_an_engine_answering_garbage_is_a_502_not_a_crash(fleet, adapter, faults):
    faults(adapter, garbage=True)
    r = fleet.http.post("/v1/chat/completions", json={"model": CHAT[adapter],
                                                      "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 502 and r.json()["error"]["code"] == "engine_error", r.text


@pytest.mark.parametrize("adapter", SIMULATED)
def test_a_stream_broken_mid_way_ends_with_an_error_event(fleet, adapter, faults):
    faults(adapter, break_after=3)
    with fleet.http.stream("POST", "/v1/chat/completions", json={
            "model": CHAT[adapter], "stream": True, "messages": [{"role": "user", "content": "one two three four five"}]}) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    last = json.loads(events[-1][len("data: "):])
    assert last["error"]["code"] == "engine_error" and "mid-stream" in last["error"]["message"]
    assert len(events) >= 2  # what came before the break was passed on


@pytest.mark.parametrize("adapter", SIMULATED)
def test_a_hung_engine_is_a_503_with_retry_after_not_a_hung_request(fleet, adapter, faults):
    faults(adapter, hang=True)
    started = time.monotonic()
    r = fleet.http.post("/v1/chat/completions", json={"model": CHAT[adapter], "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 503 and "retry-after" in r.headers, r.text
    assert time.monotonic() - started < 10  # scheduler.timeout is 2.5 s here


@pytest.mark.parametrize("adapter", SIMULATED)
def test_a_client_that_leaves_cancels_the_engine_request(fleet, adapter, faults):
    faults(adapter, slow=40)  # 80 ms a token: the answer would take seconds
    for stream in (True, False):  # one at a time: with one slot, a second would wait in the gateway's queue
        before = sim_info(fleet, adapter)["cancelled_total"]
        leave_early(fleet, {"model": CHAT[adapter], "stream": stream,
                            "messages": [{"role": "user", "content": "a b c d e f g h"}]})
        deadline = time.monotonic() + 5
        while sim_info(fleet, adapter)["cancelled_total"] < before + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        info = sim_info(fleet, adapter)
        assert info["cancelled_total"] == before + 1 and info["running"] == 0, (stream, info)


def leave_early(fleet, body: dict, after: float = 0.5) -> None:
    """Send a request, read for ``after`` seconds, and hang up (before the answer is complete)."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", fleet.port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + fleet.key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
        sock.settimeout(after)
        deadline = time.monotonic() + after
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline and sock.recv(65536):
                pass


def test_real_llamacpp_stops_when_the_client_leaves(fleet):
    url = replica(fleet, CHAT["llamacpp"])["base_url"]
    with fleet.http.stream("POST", "/v1/chat/completions", json={
            "model": CHAT["llamacpp"], "stream": True, "max_tokens": 400, "temperature": 1,
            "messages": [{"role": "user", "content": "Write a long story."}]}) as r:
        lines = r.iter_lines()
        next(lines), next(lines)
        assert _llamacpp_processing(url) == 1
    deadline = time.monotonic() + 2  # 400 tokens would take ~3 s on two cores
    while _llamacpp_processing(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _llamacpp_processing(url) == 0


def _llamacpp_processing(url: str) -> float:
    for line in engine_request(url, "GET", "/metrics").text.splitlines():
        if line.startswith("llamacpp:requests_processing"):
            return float(line.split()[-1])
    raise AssertionError("llama.cpp exposes no llamacpp:requests_processing")


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_health_and_load_are_read_from_the_engine(fleet, adapter, faults):
    name = CHAT[adapter]
    assert replica(fleet, name)["health"] == {"state": "ready", "reason": ""}
    if adapter == "openai":  # a server seekstack does not run: its load is its own business
        assert replica(fleet, name)["load"] == {"queued": None, "running": None, "kv_use": None}
        return
    if adapter in SIMULATED:
        faults(adapter, slow=200)  # 0.4 s a token: seconds of work for the heartbeat to see
    body = {"model": name, "stream": True, "max_tokens": 400, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell a long story."}]}
    with fleet.http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, r.read()
        lines = r.iter_lines()
        first = next(lines)
        assert "error" not in first, first
        deadline = time.monotonic() + 5  # the heartbeat reads load every 0.5 s
        while (replica(fleet, name)["load"]["running"] or 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = replica(fleet, name)
        load = seen["load"]
        still = next(lines)  # the answer was still streaming when the load was read
    assert load["running"] == 1 and load["queued"] == 0, (seen, first, still)
    if adapter in ("vllm", "sglang"):  # KV-cache use, where the engine reports it
        assert 0 < load["kv_use"] <= 1
    else:
        assert load["kv_use"] is None  # llama.cpp does not report it


@pytest.mark.parametrize("adapter", SIMULATED)
def test_an_engine_that_refuses_connections_is_down_with_a_reason_then_back(fleet, adapter, faults):
    name = CHAT[adapter]
    faults(adapter, refuse=True)
    deadline = time.monotonic() + 5
    while replica(fleet, name)["health"]["state"] == "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
    health = replica(fleet, name)["health"]
    assert health["state"] == "down" and "no answer" in health["reason"], health
    r = fleet.http.post("/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 503 and r.json()["error"]["code"] in ("engine_unavailable",), r.text
    set_faults(fleet)
    deadline = time.monotonic() + 8
    while replica(fleet, name)["state"] != "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fleet.client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hi"}]).choices


@pytest.mark.parametrize("adapter", ["vllm", "sglang"])
def test_a_launched_engine_takes_requests_only_with_the_gateways_key(fleet, adapter):
    url = replica(fleet, CHAT[adapter])["base_url"]
    assert url.startswith("http://127.0.0.1:")  # loopback, and …
    r = httpx.post(url + "/v1/chat/completions", json={"model": CHAT[adapter], "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 401  # … its key lives only in the gateway (and the engine's environment)
    if adapter in SIMULATED:
        argv = sim_info(fleet, adapter)["argv"]
        assert adapter == "sglang" or not any(a.startswith("--api-key") for a in argv)  # vLLM: in VLLM_API_KEY


def test_the_upstream_servers_key_and_model_id_are_used_and_never_logged(fleet):
    sent = sim_info(fleet, "openai")
    assert "upstream-r1" in sent["served_names"]
    fleet.client.chat.completions.create(model=CHAT["openai"], messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert sim_info(fleet, "openai")["last_request"]["model"] == "upstream-r1"
    assert "upstream-secret" not in fleet.log_path.read_text()
    assert not any("upstream-secret" in p.read_text(errors="replace") for p in Path(fleet.config_path.parent).glob("serve-state/logs/*"))


@pytest.mark.parametrize("adapter", [a for a in ("vllm", "sglang") if a in SIMULATED])
def test_serve_launches_exactly_what_plan_prints(fleet, adapter):
    """Planner → engine, one truth: the plan's launch command is what serve ran (bar the port and the key)."""
    path = fleet.hf[CHAT[adapter]]
    out = subprocess.run([sys.executable, "-m", "seekstack", "plan", path, "--engine", adapter, "--hardware", "1xH100",
                          "--context", str(CONTEXT), "--concurrency", "4", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    planned = json.loads(out.stdout)["launch"]
    ran = sim_info(fleet, adapter)["argv"]
    if adapter == "sglang":
        ran = ["python", *ran[1:]]  # `python -m sglang.launch_server`, whichever interpreter
    else:
        ran = ran
    assert _without(ran, "--port", "--api-key") == _without(planned, "--port", "--api-key")
    assert "--reasoning-parser" in planned  # a DeepSeek-R1 model gets the engine's reasoning parser


def _without(argv: list[str], *flags: str) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in flags:
            skip = True
            continue
        if arg.partition("=")[0] in flags:
            continue
        out.append(arg)
    return out


def test_ps_marks_simulated_replicas(fleet):
    out = subprocess.run([sys.executable, "-m", "seekstack", "ps", "--url", fleet.url, "--json"],
                         capture_output=True, text=True, env={**os.environ, "SEEKSTACK_API_KEY": fleet.key})
    assert out.returncode == 0, out.stderr
    rows = {r["model"]: r for r in json.loads(out.stdout)}
    assert rows[CHAT["vllm"]]["simulated"] is True and rows[CHAT["vllm"]]["engine"] == "vllm"
    assert rows[CHAT["llamacpp"]]["simulated"] is False
