"""Settings registry: validation, env overrides, every-problem-at-once reporting."""

from pathlib import Path

import pytest

from seekstack.config import ModelConfig, Settings, check_settings, env_overrides, load_settings, settings_reference
from seekstack.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "seekstack.yaml"
    path.write_text(text)
    return path


def test_defaults_serve_embedded_model_on_loopback(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={})
    assert settings.server.host == "127.0.0.1"
    assert [m.name for m in settings.models] == ["smollm2-135m"]
    assert settings.models[0].resolved_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert settings.scheduler.policy in ("round-robin", "least-outstanding", "least-load", "prefix-affinity")


def test_full_file_is_accepted(tmp_path):
    path = write(tmp_path, """
server: {host: 127.0.0.1, port: 9001, max_body_bytes: 1048576}
scheduler: {policy: round-robin, timeout: 30}
models:
  - name: deepseek-r1-distill-qwen-7b
    path: /models/r1-7b.gguf
    engine: llamacpp
    quantization: Q4_K_M
    device: cpu
    replicas: 2
    context: 8192
    slots: 2
    threads: 2
    gpu_layers: 0
    defaults: {max_tokens: 512}
""")
    s = load_settings(path, environ={})
    m = s.models[0]
    assert (s.server.port, s.scheduler.policy, m.replicas, m.context, m.slots) == (9001, "round-robin", 2, 8192, 2)
    # family defaults (R1: temperature 0.6, top_p 0.95) merged under explicit ones
    assert m.sampling_defaults() == {"temperature": 0.6, "top_p": 0.95, "max_tokens": 512}
    assert m.reasoning_format() == "deepseek_r1"


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, """
server: {port: not-a-port, colour: blue}
scheduler: {policy: random}
models:
  - name: a
    source: embedded
    slots: 0
    contxt: 10
  - name: b
    source: huggingface
    slots: 0
  - name: c
    engine: remote
    url: ftp://10.0.0.7
    context: 1
""")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    text = info.value.message
    for field in ("server.port", "server.colour", "scheduler.policy", "models[0].slots", "models[0].contxt",
                  "models[1].source", "models[1].slots", "models[2].engine: url", "models[2].context"):
        assert field in text, field
    assert "9 problem(s)" in text
    assert "remove this key" in text and "use a number" in text
    assert "unknown source 'huggingface'" in text and "use http://, https:// or unix://" in text


def test_trusted_proxies_are_addresses_or_networks(tmp_path):
    assert load_settings(write(tmp_path, "server: {trusted_proxies: [10.0.0.0/8, 192.168.1.7, '::1']}"),
                         environ={}).server.trusted_proxies == ["10.0.0.0/8", "192.168.1.7", "::1"]
    assert load_settings(write(tmp_path, "server: {}"), environ={}).server.trusted_proxies == []  # none by default
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "server: {trusted_proxies: [nginx.local]}"), environ={})
    assert "server.trusted_proxies" in info.value.message and "'nginx.local' is not an IP address" in info.value.message


def test_the_quota_store_is_one_redis_or_the_sentinels_that_name_its_master(tmp_path):
    sentinels = "quotas: {store: redis, redis_sentinels: ['10.0.0.5:26379', '[fd00::7]:26379'], redis_sentinel_master: q}"
    q = load_settings(write(tmp_path, sentinels), environ={}).quotas
    assert (q.redis_sentinels, q.redis_sentinel_master, q.redis_url) == (["10.0.0.5:26379", "[fd00::7]:26379"], "q", None)
    assert check_settings(load_settings(write(tmp_path, sentinels), environ={}), models=False) == []
    for text, problems in (("quotas: {store: redis}", ["quotas.redis_url: required with quotas.store: redis"]),
                           ("quotas: {store: redis, redis_url: 'redis://r', redis_sentinels: ['r:26379']}",
                            ["set it or quotas.redis_url, not both"]),
                           ("quotas: {store: redis, redis_sentinels: ['sentinel-1', 'r:0']}",
                            ["'sentinel-1' is not host:port", "'r:0' is not host:port"])):
        found = check_settings(load_settings(write(tmp_path, text), environ={}), models=False)
        assert len(found) == len(problems) and all(p in f for p, f in zip(problems, found)), found


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "server:\n  port: [1,\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "not valid YAML at line" in info.value.message


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.yaml", environ={})
    assert "does not exist" in info.value.message


def test_env_overrides_are_typed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"SEEKSTACK_SERVER__PORT": "9100", "SEEKSTACK_SCHEDULER__RETRIES": "0",
           "SEEKSTACK_SERVER__HOST": "::1", "UNRELATED": "x"}
    s = load_settings(None, environ=env)
    assert (s.server.port, s.scheduler.retries, s.server.host) == (9100, 0, "::1")


def test_env_bool_zero_is_false():
    # never bool(os.getenv(...)): "0" must mean false
    over = env_overrides({"SEEKSTACK_MODELS": "[{name: m, source: embedded, embeddings: 0}]"})
    assert Settings.model_validate(over).models[0].embeddings is False


def test_bad_env_override_is_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={"SEEKSTACK_SERVER__PORT": "99999"})
    assert "server.port" in info.value.message


def test_duplicate_model_names_refused():
    with pytest.raises(Exception) as info:
        Settings.model_validate({"models": [{"name": "a", "source": "embedded"}, {"name": "a", "source": "embedded"}]})
    assert "repeated: a" in str(info.value)


def test_model_needs_path_or_source():
    with pytest.raises(Exception) as info:
        ModelConfig(name="x")
    assert "set `path`" in str(info.value)


def test_reference_lists_every_setting():
    text = settings_reference()
    for section, model in (("server", Settings.model_fields["server"].annotation), ("models[]", ModelConfig)):
        for name in model.model_fields:
            assert f"`{section}.{name}`" in text, name


def test_engines_found_by_dns_are_named_by_a_url_with_a_host_name_and_port():
    model = ModelConfig.model_validate({"name": "r1", "engine": {"kind": "vllm", "discover": "http://engines-r1.llm:8000/v1"}})
    assert model.engine.discover == "http://engines-r1.llm:8000" and not model.engine.launched
    served = ModelConfig.model_validate({"name": "q", "engine": {"kind": "openai", "discover": "https://qwen.infra:443"}})
    assert served.engine.discover == "https://qwen.infra:443"  # any OpenAI-compatible servers, found the same way
    for engine, problem in (({"discover": "http://e:8000", "url": "http://e:8000"}, "set one of `url`"),
                            ({"discover": "http://engines-r1.llm"}, "give http(s)://NAME:PORT"),
                            ({"discover": "unix:///run/e.sock"}, "give http(s)://NAME:PORT")):
        with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            ModelConfig.model_validate({"name": "r1", "engine": {"kind": "vllm", **engine}})
    with pytest.raises(ValueError, match="not `url` / `endpoints` / `discover`"):
        ModelConfig.model_validate({"name": "r1", "engine": {"kind": "vllm", "discover": "http://e:8000"},
                                    "autoscale": {"min_replicas": 1, "max_replicas": 2}})


def test_keep_alive_is_for_engines_seekstack_starts_and_not_with_autoscale():
    model = ModelConfig.model_validate({"name": "m", "source": "embedded", "keep_alive": 300})
    assert model.keep_alive == 300
    with pytest.raises(ValueError, match="keep_alive: only engines seekstack starts can be unloaded"):
        ModelConfig.model_validate({"name": "r1", "engine": {"kind": "vllm", "url": "http://e:8000"}, "keep_alive": 300})
    with pytest.raises(ValueError, match="keep_alive and autoscale: set one"):
        ModelConfig.model_validate({"name": "m", "source": "embedded", "keep_alive": 300,
                                    "autoscale": {"min_replicas": 1, "max_replicas": 2}})
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        ModelConfig.model_validate({"name": "m", "source": "embedded", "keep_alive": 0})

