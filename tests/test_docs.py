"""Docs that are tested: the settings reference is generated, and every CLI command is documented."""

from pathlib import Path

from seekstack.cli import app
from seekstack.config import settings_reference

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_current():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == settings_reference(), "run `make docs` to regenerate docs/configuration.md"


def command_names():
    names = [c.name for c in app.registered_commands]
    for group in app.registered_groups:
        names += [f"{group.name} {c.name}" for c in group.typer_instance.registered_commands]
    return names


def test_every_cli_command_is_in_readme():
    readme = (ROOT / "README.md").read_text()
    for name in command_names():
        assert f"seekstack {name}" in readme, name


def test_error_tree_is_drawn_in_docstring():
    import seekstack.errors as errors

    for name in errors.__all__:
        assert name in errors.__doc__, name
