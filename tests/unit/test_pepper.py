"""One pepper per governance database (SQLite and a real PostgreSQL): the first gateway's is
recorded by its fingerprint; a gateway with another one, or with none on a database that has
keys, is refused at start — it would have answered every key with 401."""

from __future__ import annotations

import shutil
import stat
import threading

import pytest

from seekstack.errors import ConfigError
from seekstack.governance.keys import hash_key, matches
from seekstack.governance.pepper import FACT, fingerprint, load_shared_pepper


def test_the_first_gateway_records_its_pepper_and_one_with_a_copy_of_it_starts(opener, tmp_path):
    first = tmp_path / "a" / "pepper.key"
    pepper = load_shared_pepper(first, opener())
    assert len(pepper) == 32 and stat.S_IMODE(first.stat().st_mode) == 0o600
    assert opener().fleet_fact(FACT) == fingerprint(pepper) != pepper.hex()
    copy = tmp_path / "b" / "pepper.key"
    copy.parent.mkdir()
    shutil.copy2(first, copy)
    assert load_shared_pepper(copy, opener()) == pepper
    assert load_shared_pepper(first, opener()) == pepper  # and the first again, restarted


def test_another_pepper_is_refused_naming_the_file_and_the_fix(opener, tmp_path):
    load_shared_pepper(tmp_path / "a" / "pepper.key", opener())
    other = tmp_path / "b" / "pepper.key"
    other.parent.mkdir()
    other.write_bytes(b"\x01" * 32)
    with pytest.raises(ConfigError) as refused:
        load_shared_pepper(other, opener())
    assert f"{other} is not the pepper the governance database's keys were hashed with" in refused.value.message
    assert "copy pepper.key (mode 0600) into this state_dir" in refused.value.fix
    assert other.read_bytes() == b"\x01" * 32  # left as it was


def test_a_missing_pepper_is_refused_and_none_is_made(opener, tmp_path):
    load_shared_pepper(tmp_path / "a" / "pepper.key", opener())
    missing = tmp_path / "b" / "pepper.key"
    with pytest.raises(ConfigError, match="is missing, and the governance database already holds keys"):
        load_shared_pepper(missing, opener())
    assert not missing.exists()


def test_a_database_from_before_fingerprints_keeps_the_pepper_its_keys_were_hashed_with(opener, tmp_path):
    """Keys, no fingerprint (written by an earlier seekstack): a state directory without the
    pepper is refused; the first gateway with one has it recorded, and a different one after is refused."""
    store = opener()
    pepper_file = tmp_path / "a" / "pepper.key"
    pepper_file.parent.mkdir()
    pepper_file.write_bytes(b"\x02" * 32)
    store.create_team("t")
    store.create_user("ann", "t", "api_consumer")
    store.add_key("k" * 12, hash_key(b"\x02" * 32, "sk-secret"), "n", "ann", ["*"], ["*"], None)
    assert store.fleet_fact(FACT) is None
    with pytest.raises(ConfigError, match="is missing"):
        load_shared_pepper(tmp_path / "b" / "pepper.key", opener())
    pepper = load_shared_pepper(pepper_file, opener())
    assert matches(pepper, "sk-secret", store.key("k" * 12).hash)
    other = tmp_path / "c" / "pepper.key"
    other.parent.mkdir()
    other.write_bytes(b"\x03" * 32)
    with pytest.raises(ConfigError, match="is not the pepper"):
        load_shared_pepper(other, opener())


def test_of_two_gateways_starting_together_with_different_peppers_exactly_one_is_refused(opener, tmp_path):
    files = []
    for name, byte in (("a", b"\x04"), ("b", b"\x05")):
        path = tmp_path / name / "pepper.key"
        path.parent.mkdir()
        path.write_bytes(byte * 32)
        files.append(path)
    stores = [opener(), opener()]
    both_read = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def start(path, store):
        both_read.wait()
        try:
            load_shared_pepper(path, store)
            outcomes[path.parent.name] = "started"
        except ConfigError:
            outcomes[path.parent.name] = "refused"

    threads = [threading.Thread(target=start, args=pair) for pair in zip(files, stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values()) == ["refused", "started"]
    winner = next(name for name, outcome in outcomes.items() if outcome == "started")
    assert opener().fleet_fact(FACT) == fingerprint((tmp_path / winner / "pepper.key").read_bytes())
