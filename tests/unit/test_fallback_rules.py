"""Model fallbacks as data and config (traffic/fallbacks.py, config.py): what may be a fallback,
which errors let one answer, what a reload and a host role do with them. Their effect on
requests is tested on a real gateway in tests/integration/test_fallbacks.py."""

from __future__ import annotations

import typing

import pytest
import yaml

from seekstack.config import FallbackReason, Settings, check_config
from seekstack.errors import (ContextLengthError, EngineError, EngineUnavailableError, OverloadedError,
                              RateLimitError, UnsupportedError)
from seekstack.governance.meter import Meter
from seekstack.hostroles import role_problems
from seekstack.reload import as_configured, rerouted
from seekstack.traffic.fallbacks import PASSES, REASONS, TRIGGERS, Skipped, reason, tried_text

CHAT = {"source": "embedded"}


def settings(*models: dict) -> Settings:
    return Settings.model_validate({"models": list(models)})


def test_a_model_falls_back_to_other_models_of_its_config_in_order():
    s = settings({"name": "r1", **CHAT, "fallbacks": ["distill", "tiny"]}, {"name": "distill", **CHAT},
                 {"name": "tiny", **CHAT})
    assert s.model("r1").fallbacks == ["distill", "tiny"]
    assert s.model("r1").fallback_on == ["unavailable", "overloaded"]  # a longer context is asked for by name
    assert s.model("distill").fallbacks == []


@pytest.mark.parametrize("models, problem", [
    ([{"name": "r1", **CHAT, "fallbacks": ["nosuch"]}], "fallback 'nosuch' is not a model of this config; models: r1"),
    ([{"name": "r1", **CHAT, "fallbacks": ["r1"]}], "fallbacks must name other models, each once ('r1')"),
    ([{"name": "r1", **CHAT, "fallbacks": ["b", "b"]}, {"name": "b", **CHAT}], "each once ('b')"),
    ([{"name": "r1", **CHAT, "fallbacks": ["emb"]}, {"name": "emb", **CHAT, "embeddings": True}],
     "fallback 'emb' must be a chat model too"),
    ([{"name": "emb", **CHAT, "embeddings": True, "fallbacks": ["r1"]}, {"name": "r1", **CHAT}],
     "fallback 'r1' must be an embedding model too"),
])
def test_config_check_names_a_fallback_that_cannot_be_one(tmp_path, models, problem):
    path = tmp_path / "seekstack.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    problems = check_config(path)
    assert len(problems) == 1 and problem in problems[0], problems


def test_fallback_on_takes_the_three_reasons_and_not_none(tmp_path):
    path = tmp_path / "seekstack.yaml"
    path.write_text(yaml.safe_dump({"models": [{"name": "a", **CHAT, "fallback_on": ["timeout"]},
                                               {"name": "b", **CHAT, "fallback_on": []}]}))
    problems = check_config(path)
    assert len(problems) == 2 and "'unavailable', 'overloaded' or 'context_length'" in problems[0], problems
    assert "models[1].fallback_on" in problems[1] and "at least 1 item" in problems[1], problems


def test_which_errors_let_a_fallback_answer():
    """Unavailable (503), overloaded (429 from the model's queue) and context length (400); not the
    caller's own quota (429 too), nor an engine's error after the retries, nor a bad request."""
    assert reason(EngineUnavailableError("down")) == "unavailable"
    assert reason(OverloadedError("full")) == "overloaded"
    assert reason(ContextLengthError("long")) == "context_length"
    for refused in (RateLimitError("quota"), EngineError("500"), UnsupportedError("media")):
        assert not isinstance(refused, TRIGGERS)
    assert isinstance(UnsupportedError("media"), PASSES) and reason(UnsupportedError("x")) == "unsupported"
    assert {name for _, name in REASONS} == set(typing.get_args(FallbackReason))  # what the config accepts
    assert tried_text([]) == ""
    assert tried_text([Skipped("b", "unavailable"), Skipped("c", "context_length")]) == \
        "; fallbacks tried: b (unavailable), c (context_length)"


def test_a_reload_that_changes_only_fallbacks_replaces_no_engine():
    before = settings({"name": "a", **CHAT, "context": 1024, "fallbacks": ["b"]}, {"name": "b", **CHAT})
    after = settings({"name": "a", **CHAT, "context": 1024, "fallbacks": [], "fallback_on": ["context_length"]},
                     {"name": "b", **CHAT})
    assert as_configured(before) == as_configured(after)  # the engines' view: nothing changed
    running = before.model("a").model_copy(update={"slots": 2})  # as serve derived it
    kept = rerouted(running, after.model("a"))
    assert (kept.slots, kept.fallbacks, kept.fallback_on) == (2, [], ["context_length"])


def test_an_engines_host_leaves_fallbacks_to_the_gateways():
    s = settings({"name": "a", **CHAT, "fallbacks": ["b"], "engine": {"kind": "llamacpp", "port": 9000,
                                                                       "api_key_env": "K"}},
                 {"name": "b", **CHAT, "engine": {"kind": "llamacpp", "port": 9100, "api_key_env": "K"}})
    assert role_problems(s, "engines") == [
        "models[0] (a): fallbacks are chosen by the gateways, whose config lists them — drop fallbacks here"]


def test_rewinding_a_meter_forgets_one_attempt_and_keeps_earlier_deferred_work():
    meter = Meter(capture=True)
    earlier = lambda: None  # noqa: E731
    meter.after.append(earlier)
    meter.model, meter.replica, meter.pii, meter.request_body = "a", "0", {"phone": 1}, {"model": "a"}
    meter.response_parts.append("x")
    meter.after.append(lambda: None)
    meter.rewind(1)
    assert (meter.model, meter.replica, meter.pii, meter.request_body, meter.response_parts) == (None, None, {}, None, [])
    assert meter.after == [earlier] and meter.capture


def test_when_no_model_answers_the_record_keeps_what_the_first_attempt_found():
    meter = Meter()
    count_first = lambda: None  # noqa: E731  (the deferred count under `detect`)
    meter.pii = {"cn_mobile": 1}
    meter.after.append(count_first)
    meter.rewind(0)  # the model asked for could not take it
    meter.pii = {"email": 2}  # a fallback's attempt, which could not either
    meter.after.append(lambda: None)
    meter.rewind(0)
    assert (meter.pii, meter.after) == ({}, [])
    meter.keep_first()
    assert (meter.pii, meter.after) == ({"cn_mobile": 1}, [count_first])
