"""The gateways on one governance database (SQLite and a real PostgreSQL): claimed at start, seen
at each usage flush, stopped at shutdown; serving, silent or stopped by those times; one process
per audit chain; the policy sections in which a gateway differs from the others."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from seekstack import __version__
from seekstack.config import RoleConfig, Settings
from seekstack.errors import ConfigError
from seekstack.governance import roster

POLICY = roster.policy_of(Settings())


def _other(store, writer: str, instance: str = "elsewhere", host: str = "host-b", pid: int = 4242,
           policy: dict | None = None) -> None:
    """Another process enrols under ``writer`` (as its claim would, after its own checks)."""
    store.gateway_started(writer, instance, host, "10.0.0.9:8800", "/srv/audit", __version__, pid,
                          json.dumps(policy or POLICY))


def test_a_gateway_is_claimed_seen_stopped_and_claimed_again(opener):
    store = opener()
    mine = roster.claim(store, "gw-a", "0.0.0.0:8800", "/var/lib/seekstack/audit", POLICY)
    roster.claim(opener(), "gw-b", "0.0.0.0:8800", "/srv/audit-b", POLICY)
    [a, b] = roster.listed(opener(), me="gw-a")
    assert (a["writer"], a["host"], a["address"], a["audit_dir"], a["version"], a["pid"]) == (
        "gw-a", socket.gethostname(), "0.0.0.0:8800", "/var/lib/seekstack/audit", __version__, os.getpid())
    assert a["state"] == b["state"] == "serving" and a["this"] and not b["this"] and a["stopped"] is None
    assert a["differs"] == b["differs"] == [] and "instance" not in a and "policy" not in a

    seen = a["seen"]
    assert roster.listed(store, now=seen + roster.SILENT_AFTER_S - 1)[0]["state"] == "serving"
    assert roster.listed(store, now=seen + roster.SILENT_AFTER_S + 1)[0]["state"] == "silent"  # killed, or cut off
    time.sleep(0.01)
    store.gateway_seen("gw-a", mine)  # the heartbeat: each usage flush
    assert roster.listed(store)[0]["seen"] > seen

    store.gateway_stopped("gw-a", mine)
    stopped = roster.listed(store)[0]
    assert stopped["state"] == "stopped" and stopped["stopped"] >= stopped["started"]
    again_instance = roster.claim(store, "gw-a", "10.0.0.2:8800", "/var/lib/seekstack/audit", POLICY)
    again = roster.listed(store)
    assert len(again) == 2 and again[0]["state"] == "serving" and again[0]["address"] == "10.0.0.2:8800"
    assert again[0]["stopped"] is None and again[0]["started"] >= stopped["stopped"] and again_instance != mine


def test_a_copy_of_a_running_gateways_audit_directory_is_refused_when_its_owner_is_seen(opener):
    """Another host wrote this chain a moment ago: the claim waits, sees its heartbeat, and is
    refused in one line naming that host and the copy; the owner's row is left as it was."""
    store = opener()
    _other(store, "gw-a")
    beat = threading.Timer(0.3, lambda: opener().gateway_seen("gw-a", "elsewhere"))
    beat.start()
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        roster.claim(store, "gw-a", "0.0.0.0:8800", "/copy/audit", POLICY, poll=0.1)
    beat.join()
    assert time.monotonic() - started < 5
    assert "audit writer gw-a is being written by the gateway on host-b (pid 4242" in str(refused.value)
    assert "/copy/audit is a copy of that gateway's audit directory" in str(refused.value)
    assert "an audit directory of its own" in refused.value.fix
    [row] = store.gateways("gw-a")
    assert (row["instance"], row["host"], row["stopped"]) == ("elsewhere", "host-b", None)


def test_a_claim_waits_for_a_silent_owner_and_not_for_a_stopped_or_dead_one(opener):
    store = opener()
    _other(store, "gw-a")  # killed on its host just now: it falls silent 1 s from here
    store.execute("UPDATE gateways SET seen = ? WHERE writer = ?", (time.time() - roster.SILENT_AFTER_S + 1, "gw-a"))
    started = time.monotonic()
    roster.claim(store, "gw-a", "0.0.0.0:8800", "/srv/audit", POLICY, poll=0.1)
    assert 0.8 < time.monotonic() - started < 5
    assert store.gateways("gw-a")[0]["host"] == socket.gethostname()

    _other(store, "gw-b")
    store.gateway_stopped("gw-b", "elsewhere")  # shut down cleanly: no wait
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _other(store, "gw-c", host=socket.gethostname(), pid=int(dead.stdout))  # this host, a process that is gone
    _other(store, "gw-d", host=socket.gethostname(), pid=os.getpid())  # this very process (restarted in it)
    started = time.monotonic()
    for writer in ("gw-b", "gw-c", "gw-d"):
        roster.claim(store, writer, "0.0.0.0:8800", "/srv/audit", POLICY, poll=0.1)
    assert time.monotonic() - started < 0.5

    _other(store, "gw-e", host=socket.gethostname(), pid=os.getppid())  # a live process of this host holds it
    beat = threading.Timer(0.3, lambda: opener().gateway_seen("gw-e", "elsewhere"))  # and beats
    beat.start()
    with pytest.raises(ConfigError, match="audit writer gw-e is being written by"):
        roster.claim(store, "gw-e", "0.0.0.0:8800", "/srv/audit", POLICY, poll=0.1)
    beat.join()


def test_a_gateway_whose_chain_another_process_took_over_learns_it_at_its_next_heartbeat(opener):
    """Two copies that started together (or one cut off long enough for its copy to start): the
    roster keeps the last one; the other's heartbeat neither refreshes nor stops that row, and
    its reading of the roster names the process that took over."""
    store = opener()
    mine = roster.claim(store, "gw-a", "0.0.0.0:8800", "/srv/audit", POLICY)
    fleet = roster.Fleet("gw-a", mine)
    fleet.read(store)
    assert fleet.taken_by is None and fleet.counts == {"serving": 1, "silent": 0, "stopped": 0}

    _other(store, "gw-a", instance="copy", host="host-c")
    seen = store.gateways("gw-a")[0]["seen"]
    time.sleep(0.01)
    store.gateway_seen("gw-a", mine)
    store.gateway_stopped("gw-a", mine)
    [row] = store.gateways("gw-a")
    assert (row["instance"], row["seen"], row["stopped"]) == ("copy", seen, None)
    fleet.read(store)
    assert fleet.taken_by["host"] == "host-c" and fleet.taken_by["pid"] == 4242


def test_the_policy_is_fingerprinted_by_section_and_host_specific_settings_are_not_in_it():
    base = Settings()
    assert roster.policy_of(Settings()) == POLICY and set(POLICY) == set(roster.POLICY)
    moved = Settings(server={"host": "0.0.0.0", "port": 9000}, state_dir="/srv/seekstack",
                     audit={"dir": "/srv/audit", "max_bytes": 1 << 30}, quotas={"store": "memory", "redis_url": None})
    assert roster.policy_of(moved) == POLICY  # where a gateway runs and keeps its files is its own
    odd = Settings(roles={"analyst": RoleConfig(permissions=["usage:read"])}, pii={"default": "mask"},
                   audit={"capture_bodies": True}, quotas={"store": "redis", "redis_url": "redis://r"})
    changed = {s for s, fp in roster.policy_of(odd).items() if fp != POLICY[s]}
    assert changed == {"roles", "pii", "audit", "quotas"} and base.roles == {}


def test_drift_names_the_sections_in_which_a_serving_gateway_differs_from_most(opener):
    store = opener()
    masked = roster.policy_of(Settings(pii={"default": "mask"}))
    analyst = roster.policy_of(Settings(roles={"analyst": RoleConfig(permissions=["usage:read"])}))
    for writer, policy in (("gw-a", POLICY), ("gw-b", POLICY), ("gw-c", {**masked, "roles": analyst["roles"]})):
        roster.claim(store, writer, "0.0.0.0:8800", f"/srv/{writer}", policy)
    _other(store, "gw-old", policy=masked)
    store.gateway_stopped("gw-old", "elsewhere")  # stopped: not counted
    rows = {r["writer"]: r for r in roster.listed(store)}
    assert {w: r["differs"] for w, r in rows.items()} == {"gw-a": [], "gw-b": [], "gw-c": ["roles", "pii"],
                                                           "gw-old": []}
    fleet = roster.Fleet("gw-c", store.gateways("gw-c")[0]["instance"])
    fleet.read(store)
    assert fleet.differs == ["roles", "pii"] and fleet.counts == {"serving": 3, "silent": 0, "stopped": 1}

    # one against one (a config change rolled out to half the fleet): the newer start is the usual one
    store.gateway_stopped("gw-a", store.gateways("gw-a")[0]["instance"])
    time.sleep(0.01)
    roster.claim(store, "gw-d", "0.0.0.0:8800", "/srv/gw-d", masked)
    store.gateway_stopped("gw-c", store.gateways("gw-c")[0]["instance"])
    assert {r["writer"]: r["differs"] for r in roster.listed(store) if r["state"] == "serving"} == {
        "gw-b": ["pii"], "gw-d": []}
