"""The gateway in-process, in front of the engine simulator in the same event loop.

No subprocess and no port: the simulator listens on a Unix socket in the test's own loop, the
gateway's app runs its real lifespan (governance in a temporary state directory, the supervisor,
the Backend of the engine kind under test) and is called through httpx's ASGI transport. Every
stage of the request path — guard, inference, the Backend's dialect, shaping, PII — is the real
one; only the engine is simulated, and says so. For what needs real processes (signals,
supervision, TLS, real llama.cpp), the tests start a real `seekstack serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import httpx

from seekstack.config import Settings
from seekstack.gateway.app import build_app
from seekstack.sim import SimConfig, SimEngine, SimServer


@dataclass
class Gateway:
    client: httpx.AsyncClient     # the system admin's key
    app: Any
    sim: SimEngine
    key: str


@contextlib.asynccontextmanager
async def gateway(tmp: Path, *, dialect: str = "vllm", name: str = "deepseek-r1", context: int = 512,
                  sim: dict | None = None, config: dict | None = None, model: dict | None = None) -> AsyncIterator[Gateway]:
    """A gateway serving one model, ``name``, from a simulator speaking ``dialect``."""
    engine = _simulator(dialect, (name,), context, sim)
    server = await SimServer(engine, uds=tmp / "sim.sock").start()
    app = build_app(_settings(tmp, [{"name": name, **(model or {})}], dialect, server.base_url, context, config))
    try:
        async with app.router.lifespan_context(app):
            key = app.state.bootstrap_key
            for _ in range(200):
                if all_ready(app):
                    break
                await asyncio.sleep(0.01)
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30,
                                         headers={"Authorization": f"Bearer {key}"}) as client:
                yield Gateway(client, app, engine, key)
    finally:
        await server.close()


def _simulator(dialect: str, names: tuple[str, ...], context: int, options: dict | None = None) -> SimEngine:
    """A fast simulator (1 ms to the first token, 0.2 ms between tokens) that parses reasoning
    itself where its engine would."""
    return SimEngine(SimConfig(dialect=dialect, served_names=names, max_model_len=context, ttft_ms=1, itl_ms=0.2,
                               reasoning_parser=dialect != "openai", **(options or {})))


def _settings(tmp: Path, models: list[dict], dialect: str, url: str, context: int, config: dict | None) -> Settings:
    """Every model served by the simulator at ``url``, in its engine kind's dialect."""
    return Settings.model_validate({
        "state_dir": str(tmp / "state"), "server": {"log_level": "warning"},
        "supervisor": {"heartbeat_interval": 0.1, "backoff_initial": 0.1},
        "models": [{"context": context, **m, "engine": {"kind": dialect, "url": url}} for m in models],
        **(config or {})})


def run(coro) -> Any:
    return asyncio.run(coro)


@contextlib.contextmanager
def sync_gateway(tmp: Path, models: list[dict], *, dialect: str = "llamacpp", names: tuple[str, ...] = ("m",),
                 config: dict | None = None, context: int = 512):
    """The same, for synchronous callers (schemathesis): the simulator runs in a thread of its own,
    the gateway in starlette's TestClient (its lifespan included). ``models`` are model entries
    without an engine: each is served by the one simulator."""
    import threading

    from starlette.testclient import TestClient

    loop = asyncio.new_event_loop()
    engine = _simulator(dialect, names, context)
    server = SimServer(engine, uds=tmp / "sim.sock")
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    app = build_app(_settings(tmp, models, dialect, server.base_url, context, config))
    try:
        with TestClient(app, client=("127.0.0.1", 40000), raise_server_exceptions=False) as client:
            for _ in range(200):
                if all_ready(app):
                    break
                time.sleep(0.01)
            client.headers["Authorization"] = f"Bearer {app.state.bootstrap_key}"
            yield client, app, engine
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def all_ready(app) -> bool:
    """Every model has a ready endpoint (the gateway itself is ready sooner: once one has)."""
    return all(model["state"] == "ready" for model in app.state.registry.models().values())
