"""What each host role can run (hostroles.py): an engines host keeps its engines loaded."""

from __future__ import annotations

from seekstack.config import Settings
from seekstack.hostroles import role_problems


def test_an_engines_host_refuses_keep_alive_which_needs_the_gateway_that_sees_the_requests():
    settings = Settings.model_validate({"models": [{"name": "m", "source": "embedded", "keep_alive": 60,
                                                    "engine": {"kind": "llamacpp", "api_key_env": "K", "port": 9000}}]})
    assert role_problems(settings, "engines") == [
        "models[0] (m): keep_alive needs the gateway that sees the model's requests — an engines host keeps its "
        "engines loaded; drop keep_alive here"]
    assert role_problems(settings, "serve") == []
