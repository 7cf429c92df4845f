"""The `seekstack` command against a real server, and its one-line errors."""

import json
import os
import subprocess
import sys


SEEKSTACK = [sys.executable, "-m", "seekstack"]


def cli(*args, input=None, timeout=60, env=None):
    return subprocess.run([*SEEKSTACK, *args], capture_output=True, text=True, input=input, timeout=timeout,
                          env={**os.environ, **(env or {})})


def as_operator(server):
    """What the operator who started `serve` passes: its config (the admin key is found from it)."""
    return ("--url", server.url, "--config", str(server.config_path))


def assert_one_line_error(result, *words):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert lines[0].startswith("error: "), result.stderr
    assert lines[-1].startswith("fix: ") or len(lines) >= 1
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def test_help_for_every_command():
    """Every command and group answers --help (in-process: the same click tree the binary runs)."""
    from typer.testing import CliRunner

    from seekstack.cli import app

    commands = [[]] + [[c.name] for c in app.registered_commands]
    for group in app.registered_groups:
        commands += [[group.name]] + [[group.name, c.name] for c in group.typer_instance.registered_commands]
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.output or "usage:" in result.output, command  # `sim --help` is argparse's
    assert len(commands) > 40


def test_version():
    result = cli("version")
    assert result.returncode == 0 and result.stdout.startswith("seekstack 0.1.0")


def test_ps_shows_replicas(server):
    result = cli("ps", *as_operator(server), "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["model"] for r in rows} == {"smollm2-135m", "smollm2-small-ctx", "smollm2-135m-embed"}
    for r in rows:
        assert r["state"] == "ready" and r["pid"] > 0 and r["memory_bytes"] > 10 * 2**20
        assert r["base_url"].startswith("unix://") and r["port"] is None  # engines are not on TCP by default
    table = cli("ps", *as_operator(server), env={"COLUMNS": "220"})
    assert "smollm2-135m" in table.stdout and "ready" in table.stdout and "unix socket" in table.stdout


def test_models_lists_configured_models(server):
    result = cli("models", "--config", str(server.config_path), "--json")
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["smollm2-135m", "smollm2-small-ctx", "smollm2-135m-embed"]
    assert all(r["installed"] for r in rows)
    assert rows[2]["embeddings"] is True and rows[0]["embeddings"] is False and rows[1]["context"] == 256


def test_run_one_shot_streams_an_answer(server):
    result = cli("run", "smollm2-135m", "Say hi.", *as_operator(server), "--max-tokens", "8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_run_reads_piped_stdin(server):
    result = cli("run", "smollm2-135m", *as_operator(server), "--max-tokens", "4", input="Hello there\n")
    assert result.returncode == 0 and result.stdout.strip()


def test_run_unknown_model_is_one_line(server):
    result = cli("run", "nope", "hi", *as_operator(server))
    assert_one_line_error(result, "HTTP 404", "available models")


def test_run_refuses_a_max_tokens_below_one(server):
    result = cli("run", "smollm2-135m", "hi", *as_operator(server), "--max-tokens", "0")  # 0 meant "no limit"
    assert result.returncode == 2 and "--max-tokens" in result.stderr and "Traceback" not in result.stderr


def test_ps_without_server_is_one_line():
    result = cli("ps", "--url", "http://127.0.0.1:9")
    assert_one_line_error(result, "cannot reach seekstack", "seekstack serve")


def test_serve_with_missing_config_is_one_line(tmp_path):
    result = cli("serve", "--config", str(tmp_path / "missing.yaml"))
    assert_one_line_error(result, "does not exist")


def test_serve_refuses_missing_model_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("models:\n  - {name: m, path: /nonexistent/model.gguf}\n")
    result = cli("serve", "--config", str(config))
    assert_one_line_error(result, "/nonexistent/model.gguf does not exist")


def test_serve_on_busy_port_is_one_line(server, tmp_path):
    result = cli("serve", "--port", server.url.rsplit(":", 1)[1], timeout=120,
                 env={"SEEKSTACK_STATE_DIR": str(tmp_path / "state")})
    assert "Traceback" not in result.stderr
    assert result.returncode != 0
    assert f"is already in use by PID {server.proc.pid}" in result.stderr and "--port N" in result.stderr


def test_config_check_reports_all_problems(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("server: {port: 70000, extra: 1}\nmodels:\n  - {name: m, source: embedded, slots: -1}\n")
    result = cli("config", "check", str(config))
    assert_one_line_error(result, "server.port", "server.extra", "models[0].slots", "3 problem(s)")


def test_config_check_reports_file_problems_beside_schema_problems(tmp_path):
    # A bad port (schema) must not hide a missing model file or an unknown permission (checks
    # that need the rest of the entry to be valid): all at once, each with its fix.
    config = tmp_path / "bad.yaml"
    config.write_text("server: {port: 70000}\n"
                      "roles: {reader: {permissions: ['nothing:*']}}\n"
                      "models:\n"
                      f"  - {{name: gone, path: {tmp_path / 'gone.gguf'}}}\n"
                      "  - {name: m, source: embedded, slots: -1}\n")
    result = cli("config", "check", str(config))
    assert_one_line_error(result, "4 problem(s)", "server.port", "models[1].slots",
                          "models[0] (gone).path", "does not exist", "roles.reader.permissions")


def test_config_check_ok(tmp_path):
    config = tmp_path / "good.yaml"
    config.write_text("models:\n  - {name: m, source: embedded}\n")
    result = cli("config", "check", str(config))
    assert result.returncode == 0 and "ok:" in result.stdout


def test_without_a_key_the_cli_says_how_to_pass_one(server, tmp_path):
    result = cli("ps", "--url", server.url, env={"SEEKSTACK_API_KEY": "", "SEEKSTACK_STATE_DIR": str(tmp_path)})
    assert_one_line_error(result, "no API key", "--api-key")


def test_usage_errors_and_bracketed_messages_print_cleanly():
    bogus = cli("models", "--bogus")
    assert bogus.returncode == 2 and "No such option" in bogus.stderr and "unexpected" not in bogus.stderr
    bracketed = cli("pull", "nonsense")
    assert bracketed.returncode == 1 and "hf:ORG/REPO[@REV][:GLOB]" in bracketed.stderr  # not eaten as markup
