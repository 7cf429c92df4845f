"""The leader ↔ worker control channel: one JSON line each way over a private Unix socket;
errors cross it as the same kind of error; only a peer of the same user is answered."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from seekstack import control
from seekstack.errors import ConfigError, SeekstackError


def run(coro):
    return asyncio.run(coro)


async def with_server(path, handlers, body):
    server = await control.listen(path, handlers)
    try:
        return await body()
    finally:
        server.close()
        await server.wait_closed()


def test_an_answer_crosses_and_the_socket_is_private(tmp_path):
    path = tmp_path / "leader.sock"

    async def result():
        return {"added": ["b"], "failed": []}

    async def body():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        return await control.ask(path, "reload", 5)

    assert run(with_server(path, {"reload": result}, body)) == {"added": ["b"], "failed": []}


def test_errors_cross_as_the_same_kind(tmp_path):
    path = tmp_path / "leader.sock"

    async def refused():
        raise ConfigError("seekstack.yaml: the new config was refused whole", fix="fix it")

    async def unavailable():
        raise SeekstackError("the engines did not start")

    async def bug():
        raise KeyError("secret-ish detail")

    async def body():
        with pytest.raises(ConfigError) as config_error:
            await control.ask(path, "reload", 5)
        with pytest.raises(SeekstackError) as other:
            await control.ask(path, "drained", 5)
        with pytest.raises(SeekstackError) as failed:
            await control.ask(path, "bug", 5)
        with pytest.raises(SeekstackError) as unknown:
            await control.ask(path, "shutdown", 5)
        return config_error.value, other.value, failed.value, unknown.value

    config_error, other, failed, unknown = run(with_server(
        path, {"reload": refused, "drained": unavailable, "bug": bug}, body))
    assert config_error.message.endswith("refused whole") and config_error.fix == "fix it"
    assert type(other) is SeekstackError and other.message == "the engines did not start"
    assert "see this process's log" in failed.message and "secret-ish" not in failed.message
    assert "'shutdown'" in unknown.message


def test_a_line_that_is_not_a_request_gets_an_error_line(tmp_path):
    path = tmp_path / "leader.sock"

    async def body():
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"not json\n")
        line = await reader.readline()
        writer.close()
        return line

    assert b"one JSON object on one line" in run(with_server(path, {}, body))


def test_nothing_listening_and_too_slow_are_said(tmp_path):
    with pytest.raises(control.Unreachable, match="does not answer"):
        run(control.ask(tmp_path / "worker-0.sock", "reload", 5))

    path = tmp_path / "worker-1.sock"

    async def slow():
        await asyncio.sleep(5)

    async def body():
        with pytest.raises(SeekstackError, match="did not finish 'drained' within 0 s"):
            await control.ask(path, "drained", 0.2)

    run(with_server(path, {"drained": slow}, body))


def test_a_peer_of_another_user_is_not_answered(tmp_path, monkeypatch):
    path = tmp_path / "leader.sock"
    asked = []

    async def reload():
        asked.append(True)
        return {}

    me = os.getuid()
    monkeypatch.setattr(control.os, "getuid", lambda: me + 1)  # the listener "is" another user than its peer

    async def body():
        with pytest.raises(SeekstackError, match="without an answer"):
            await control.ask(path, "reload", 5)

    run(with_server(path, {"reload": reload}, body))
    assert asked == []
