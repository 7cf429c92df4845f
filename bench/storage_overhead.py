"""What the governance database costs per request: SQLite (the default) vs PostgreSQL, in one run.

A stub OpenAI server answers instantly. Two gateways with every default control on (API key,
role check, quotas on key/user/team, PII mask, fail-closed audit) front it, one with its
identity store in SQLite, one in a real PostgreSQL (Debian's, started here as in the tests).
Non-streamed chat over keep-alive connections at concurrency 1 and 32, rounds alternating.

Target (issue #17): PostgreSQL's added p50 at c=1 <= 1.5 x SQLite's (added = over the stub).

Usage: python bench/storage_overhead.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _http_load import chat_request  # noqa: E402
from governance_overhead import free_port, measure, start_gateway, wait_http  # noqa: E402
from pgserver import PostgresServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    procs: list[subprocess.Popen] = []
    postgres = PostgresServer()
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            try:
                stub_port = free_port()
                procs.append(subprocess.Popen([sys.executable, str(HERE / "stub_openai.py"), str(stub_port)]))
                wait_http(f"http://127.0.0.1:{stub_port}/health")
                targets = {"direct": (stub_port, chat_request(f"127.0.0.1:{stub_port}", None))}
                for name, extra in (("sqlite", {}), ("postgres", {"storage": {"url": postgres.new_database()}})):
                    proc, port, key = start_gateway(tmp, name, stub_port, controls=True, extra=extra)
                    procs.append(proc)
                    targets[name] = (port, chat_request(f"127.0.0.1:{port}", key))
                m = asyncio.run(measure(targets, args.rounds, [(1, 1500), (32, 6000)]))
            finally:
                for p in procs:
                    p.send_signal(signal.SIGTERM)
                for p in procs:
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        p.kill()
    finally:
        postgres.stop()
    print(f"{'':12}{'c':>4}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, by_c in m.items():
        for c, v in by_c.items():
            print(f"{name:12}{c:>4}{v['rps']:>10.0f}{v['p50_ms']:>9.2f}{v['p99_ms']:>9.2f}")
    added = {name: m[name][1]["p50_ms"] - m["direct"][1]["p50_ms"] for name in ("sqlite", "postgres")}
    ratio = added["postgres"] / added["sqlite"]
    print(f"\nadded p50 c=1: SQLite {added['sqlite']:.2f} ms, PostgreSQL {added['postgres']:.2f} ms")
    print(f"{'PASS' if ratio <= 1.5 else 'MISS'}  PostgreSQL / SQLite added p50 {ratio:.2f}  (target <= 1.5)")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "storage_overhead.json").write_text(json.dumps(
        {"measured": m, "added_p50_ms": added, "ratio": ratio, "pass": ratio <= 1.5}, indent=2))


if __name__ == "__main__":
    main()
