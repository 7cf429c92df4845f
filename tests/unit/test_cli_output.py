"""cli/common.output_file: a file the CLI writes appears whole or not at all."""

from __future__ import annotations

import stat

import pytest

from seekstack.cli.common import output_file, write
from seekstack.errors import ConfigError


def test_a_finished_file_appears_with_its_mode(tmp_path):
    target = tmp_path / "records.jsonl"
    with output_file(target, mode=0o600) as f:
        f.write("one\n")
        assert not target.exists()  # nothing at the path until the whole file is written
    assert target.read_text() == "one\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write(tmp_path / "rules.yml", "groups: []\n")
    assert stat.S_IMODE((tmp_path / "rules.yml").stat().st_mode) == 0o644


def test_a_failure_midway_leaves_the_earlier_file_and_no_partial_one(tmp_path):
    target = tmp_path / "records.jsonl"
    target.write_text("yesterday's complete export\n")
    with pytest.raises(RuntimeError):
        with output_file(target) as f:
            f.write("half of today's")
            raise RuntimeError("the database went away")
    assert target.read_text() == "yesterday's complete export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["records.jsonl"]  # no temporary file left behind


def test_an_unwritable_place_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        with output_file(tmp_path / "missing-dir" / "out.csv") as f:
            f.write("x")
    assert "cannot write" in info.value.message and "--output" in info.value.fix
