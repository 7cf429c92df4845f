"""What a host is for: its role, and what the config must say for it.

- ``serve`` (the default): the gateway and the engines it launches, on one host; models may
  also name engines elsewhere (``engine.url`` / ``engine.endpoints``).
- ``gateway``: a gateway only, stateless apart from the shared database and Redis; every
  model's engines run elsewhere, named by ``engine.url`` / ``engine.endpoints``. Several
  gateways behind a load balancer serve the same models.
- ``engines``: engines only, for a GPU host. Each engine listens on TCP at its ``engine.host``
  / ``engine.port`` and takes only requests carrying the key in its ``api_key_file`` /
  ``api_key_env`` — a secret the gateways hold too. Nothing else guards an engine's port:
  keep it on a private network (or a firewall's allow-list of the gateways' addresses).
"""

from __future__ import annotations

from typing import Literal

from .config import Settings

Role = Literal["serve", "gateway", "engines"]


def role_problems(settings: Settings, role: Role) -> list[str]:
    """Everything in ``settings`` this role cannot run, one line each naming the fix."""
    problems = []
    for i, model in enumerate(settings.models):
        where = f"models[{i}] ({model.name})"
        engine = model.engine
        if role == "gateway" and engine.launched:
            problems.append(f"{where}: a gateway host starts no engine — name where it runs with engine.url "
                            f"or engine.endpoints (engines hosts run `seekstack engines`), or use `seekstack serve`")
        if role == "engines":
            if not engine.launched:
                problems.append(f"{where}: runs elsewhere (engine.url / endpoints) — an engines host lists only "
                                f"the engines it starts")
            elif not (engine.api_key_file or engine.api_key_env):
                problems.append(f"{where}: set engine.api_key_file (or api_key_env) — the key every request to the "
                                f"engine must carry, which the gateways hold too")
            elif engine.port is None:
                problems.append(f"{where}: set engine.port — the gateways' engine.endpoints name it "
                                f"(replica i listens on port + i)")
        if role == "engines" and model.keep_alive is not None:
            problems.append(f"{where}: keep_alive needs the gateway that sees the model's requests — an engines "
                            "host keeps its engines loaded; drop keep_alive here")
        if role == "engines" and model.fallbacks:
            problems.append(f"{where}: fallbacks are chosen by the gateways, whose config lists them — drop "
                            "fallbacks here")
    return problems
