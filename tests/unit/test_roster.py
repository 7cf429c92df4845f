"""The gateways on one governance database (SQLite and a real PostgreSQL): enrolled at start,
seen at each usage flush, stopped at shutdown; serving, silent or stopped by those times."""

from __future__ import annotations

import os
import socket
import time

from seekstack import __version__
from seekstack.governance import roster


def test_a_gateway_is_enrolled_seen_stopped_and_enrolled_again(opener):
    store = opener()
    roster.enrol(store, "gw-a", "0.0.0.0:8800", "/var/lib/seekstack/audit")
    roster.enrol(opener(), "gw-b", "0.0.0.0:8800", "/srv/audit-b")
    [a, b] = roster.listed(opener(), me="gw-a")
    assert (a["writer"], a["host"], a["address"], a["audit_dir"], a["version"], a["pid"]) == (
        "gw-a", socket.gethostname(), "0.0.0.0:8800", "/var/lib/seekstack/audit", __version__, os.getpid())
    assert a["state"] == b["state"] == "serving" and a["this"] and not b["this"] and a["stopped"] is None

    seen = a["seen"]
    assert roster.listed(store, now=seen + roster.SILENT_AFTER_S - 1)[0]["state"] == "serving"
    assert roster.listed(store, now=seen + roster.SILENT_AFTER_S + 1)[0]["state"] == "silent"  # killed, or cut off
    time.sleep(0.01)
    store.gateway_seen("gw-a")  # the heartbeat: each usage flush
    assert roster.listed(store)[0]["seen"] > seen

    store.gateway_stopped("gw-a")
    stopped = roster.listed(store)[0]
    assert stopped["state"] == "stopped" and stopped["stopped"] >= stopped["started"]
    roster.enrol(store, "gw-a", "10.0.0.2:8800", "/var/lib/seekstack/audit")  # started again: one row, serving
    again = roster.listed(store)
    assert len(again) == 2 and again[0]["state"] == "serving" and again[0]["address"] == "10.0.0.2:8800"
    assert again[0]["stopped"] is None and again[0]["started"] >= stopped["stopped"]
