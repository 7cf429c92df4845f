"""Do live streams keep their pace while an auditor verifies a million-record audit log?

A gateway (`seekstack serve`) fronts a simulated engine (llama.cpp dialect, 10 ms per token;
the simulator stands in so the engine's own pace is steady). Its audit log is filled with
1,000,000 records beforehand. Eight streams run continuously; the inter-token gaps the client
sees are measured for the same span of time twice, alternating:

  quiet  — nothing else happens;
  verify — `GET /admin/v1/audit/verify` (the auditor's key) walks the whole chain meanwhile.

Then, on a second gateway whose log holds as many records 200 days old, once (it retires
them) beside a quiet window of the same length:

  retention — `POST /admin/v1/retention/run` retires every record but the newest: the chain
              is walked and checked, the signed anchor moves, and the records are deleted.

Target (issue #17): ITL p99 during verify (and during retention) <= 1.2 x quiet.

Usage: python bench/audit_verify_itl.py [--records 1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from governance_overhead import free_port, wait_http  # noqa: E402

BODY = {"model": "m", "messages": [{"role": "user", "content": "go"}], "max_tokens": 150, "stream": True,
        "ignore_eos": True}


def fill(audit_dir: Path, records: int, age_days: float = 0.0) -> None:
    """Write ``records`` audit records as a gateway would (chained, checkpointed), in batches,
    ``age_days`` old."""
    from seekstack.governance.audit import AuditLog

    log = AuditLog(audit_dir)
    batch, started, old = 10_000, time.monotonic(), time.time() - age_days * 86400
    for start in range(0, records, batch):
        log._write([{"event": "request", "decision": "allow", "request_id": f"req_{i:08x}", "key_id": "k",
                     "user": "u", "team": "t", "endpoint": "/v1/chat/completions", "ts": old + i / 1000}
                    for i in range(start, start + batch)])
    log.close()
    print(f"filled {records} records in {time.monotonic() - started:.1f} s")


async def stream_gaps(client: httpx.AsyncClient, until: float, gaps: list[float]) -> None:
    while time.monotonic() < until:
        async with client.stream("POST", "/v1/chat/completions", json=BODY) as r:
            last = None
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                now = time.perf_counter()
                if last is not None and time.monotonic() < until:
                    gaps.append(now - last)
                last = now


async def window(url: str, key: str, auditor: str, seconds: float, work: str | None) -> tuple[list[float], float | None]:
    """Inter-token gaps of 8 streams over ``seconds``; with ``work`` ("verify", "retention"), that
    admin call is made a second in."""
    gaps: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=600, headers={"Authorization": f"Bearer {key}"},
                                 limits=httpx.Limits(max_connections=16)) as client:
        until = time.monotonic() + seconds
        streams = [asyncio.create_task(stream_gaps(client, until, gaps)) for _ in range(8)]
        took = None
        if work is not None:
            await asyncio.sleep(1.0)
            t0 = time.monotonic()
            if work == "verify":
                r = await client.get("/admin/v1/audit/verify", headers={"Authorization": f"Bearer {auditor}"})
                assert r.status_code == 200 and r.json()["ok"], r.text
            else:
                r = await client.post("/admin/v1/retention/run")
                assert r.status_code == 200 and r.json()["audit_records"] > 0, r.text
            took = time.monotonic() - t0
        await asyncio.gather(*streams)
    return gaps, took


def p99(values: list[float]) -> float:
    data = sorted(values)
    return data[int(0.99 * (len(data) - 1))] * 1000


@contextlib.contextmanager
def gateway(state: Path):
    """``seekstack serve`` on ``state`` with the simulated engine (10 ms a token); yields (url, admin key, auditor key)."""
    port = free_port()
    config = state.parent / f"{state.name}.yaml"
    config.write_text(yaml.safe_dump({"state_dir": str(state), "server": {"log_level": "warning"},
                                      "pii": {"default": "off"}, "models": [
        {"name": "m", "source": "embedded", "context": 1024, "slots": 16,
         "engine": {"kind": "llamacpp", "simulate": True}}]}))
    proc = subprocess.Popen([sys.executable, "-m", "seekstack", "serve", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "SEEKSTACK_SIM_OPTIONS": "--itl-ms 10"})
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/readyz")
        yield url, (state / "admin.key").read_text().strip(), (state / "auditor.key").read_text().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        fill(tmp / "state" / "audit", args.records)  # recent: the daily retention (a minute after start) keeps them
        with gateway(tmp / "state") as (url, key, auditor):
            # one verify alone first: how long a window must be to cover it
            t0 = time.monotonic()
            alone = httpx.get(url + "/admin/v1/audit/verify", headers={"Authorization": f"Bearer {auditor}"}, timeout=600)
            assert alone.status_code == 200 and alone.json()["ok"], alone.text
            span = time.monotonic() - t0 + 2.0
            print(f"verify alone: {span - 2.0:.1f} s; windows of {span:.1f} s")
            quiet: list[float] = []
            during: list[float] = []
            took = []
            for _ in range(args.rounds):
                gaps, _ = asyncio.run(window(url, key, auditor, span, None))
                quiet += gaps
                gaps, seconds = asyncio.run(window(url, key, auditor, span, "verify"))
                during += gaps
                took.append(seconds)
        fill(tmp / "old" / "audit", args.records, age_days=200)  # past retention: a second gateway retires them
        with gateway(tmp / "old") as (url, key, auditor):
            retention_span = span + 10.0  # the walk, as verify's, then the anchor and the deletion
            retention_gaps, retention_took = asyncio.run(window(url, key, auditor, retention_span, "retention"))
            retention_quiet, _ = asyncio.run(window(url, key, auditor, retention_span, None))
    ratio = p99(during) / p99(quiet)
    print(f"ITL p50 quiet {sorted(quiet)[len(quiet) // 2] * 1000:.2f} ms, during verify "
          f"{sorted(during)[len(during) // 2] * 1000:.2f} ms")
    print(f"ITL p99 quiet {p99(quiet):.2f} ms, during verify {p99(during):.2f} ms ({len(quiet)} / {len(during)} gaps), "
          f"max {max(quiet) * 1000:.1f} / {max(during) * 1000:.1f} ms; "
          f"verify took {', '.join(f'{t:.1f}' for t in took)} s under load")
    print(f"{'PASS' if ratio <= 1.2 else 'MISS'}  ITL p99 during verify / quiet {ratio:.2f}  (target <= 1.2)")
    retention_ratio = p99(retention_gaps) / p99(retention_quiet)
    print(f"ITL p99 quiet {p99(retention_quiet):.2f} ms, during retention {p99(retention_gaps):.2f} ms, "
          f"max {max(retention_quiet) * 1000:.1f} / {max(retention_gaps) * 1000:.1f} ms; "
          f"retention of {args.records} records took {retention_took:.1f} s under load")
    print(f"{'PASS' if retention_ratio <= 1.2 else 'MISS'}  ITL p99 during retention / quiet {retention_ratio:.2f}  "
          "(target <= 1.2)")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "audit_verify_itl.json").write_text(json.dumps(
        {"records": args.records, "p99_quiet_ms": p99(quiet), "p99_verify_ms": p99(during), "ratio": ratio,
         "verify_seconds": took, "pass": ratio <= 1.2, "p99_retention_quiet_ms": p99(retention_quiet),
         "p99_retention_ms": p99(retention_gaps), "retention_ratio": retention_ratio,
         "retention_seconds": retention_took}, indent=2))


if __name__ == "__main__":
    main()
