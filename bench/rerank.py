"""What a rerank request costs through the gateway, beside an embeddings request of the same texts.

Two engine simulators answer at once (vLLM's dialect): `bge` reranks, `emb` embeds. One gateway
with every default control on (API key, role, quotas, PII `detect`, fail-closed audit) serves
both. The request is a retrieval stack's: a query and 20 passages of ~250 characters, in Chinese
and English, one with a phone number. The embeddings request sends the same 21 texts as `input`.
Rounds alternate between asking each simulator directly and asking it through the gateway, at
concurrency 1 (p50) and 4 (throughput).

Target: the gateway adds no more to a rerank request than to an embeddings request of the same
texts, the path it mirrors: added p50 (gateway − direct) at most 1.2x the embeddings' (c=1), and
the gateway's rerank throughput at c=4 at least 0.8x its embeddings throughput.

Usage: python bench/rerank.py [--rounds 5] [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import yaml

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _http_load import run  # noqa: E402
from governance_overhead import free_port, wait_http  # noqa: E402

QUERY = "上海分行的信用卡逾期催收流程是什么？What is the collection process for overdue credit cards?"
PASSAGE = ("第{i}节：信用卡逾期超过三十天的账户，由催收部门按照《个人信用卡业务管理办法》处理，客户可拨打客服热线咨询。"
           "Section {i}: accounts more than thirty days overdue are handled by the collections team under the "
           "card rules; customers may call the service line for the repayment plan and the fees that apply. ")
PASSAGES = [PASSAGE.format(i=i) for i in range(20)]  # a vector search's top 20, to be reranked
PASSAGES[5] += "联系人电话 13812345678。"
EXTRA: dict = {}


def request(host_port: str, key: str | None, path: str, body: dict) -> bytes:
    data = json.dumps(body, ensure_ascii=False).encode()
    auth = f"Authorization: Bearer {key}\r\n".encode() if key else b""
    return (f"POST {path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n").encode() + auth + b"\r\n" + data


def start_sim(name: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "seekstack", "sim", "--dialect", "vllm", "--model", name,
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/health")
    return proc, port


def start_gateway(tmp: Path, bge: int, emb: int) -> tuple[subprocess.Popen, int, str]:
    port = free_port()
    config = {"state_dir": str(tmp / "state"), "server": {"log_level": "warning"}, **EXTRA, "models": [
        {"name": "bge", "rerank": True, "context": 8192, "engine": {"kind": "vllm", "endpoints": [f"http://127.0.0.1:{bge}"]}},
        {"name": "emb", "embeddings": True, "context": 8192,
         "engine": {"kind": "vllm", "endpoints": [f"http://127.0.0.1:{emb}"]}}]}
    (tmp / "seekstack.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen([sys.executable, "-m", "seekstack", "serve", "--config", str(tmp / "seekstack.yaml"),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/readyz")
    key = (tmp / "state" / "admin.key").read_text().strip()
    base, h = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
    kid = httpx.get(f"{base}/admin/v1/whoami", headers=h).json()["key_id"]
    security = {"Authorization": f"Bearer {(tmp / 'state' / 'security-admin.key').read_text().strip()}"}
    big = {"rpm": 10**9, "tpm": 10**12, "concurrent": 10**6, "daily_tokens": 10**13}
    for scope, who in (("key", kid), ("user", "admin"), ("team", "default")):
        assert httpx.put(f"{base}/admin/v1/limits", headers=security, json={"scope": scope, "name": who, **big}).status_code == 200
    return proc, port, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    bodies = {"rerank": ("/v1/rerank", {"model": "bge", "query": QUERY, "documents": PASSAGES}),
              "embeddings": ("/v1/embeddings", {"model": "emb", "input": [QUERY, *PASSAGES]})}
    procs = []
    with tempfile.TemporaryDirectory() as tmp_name:
        try:
            bge, bge_port = start_sim("bge")
            emb, emb_port = start_sim("emb")
            procs += [bge, emb]
            gateway, port, key = start_gateway(Path(tmp_name), bge_port, emb_port)
            procs.append(gateway)
            targets = {}  # (kind, via) -> (port, request bytes)
            for kind, (path, body) in bodies.items():
                direct = bge_port if kind == "rerank" else emb_port
                targets[kind, "direct"] = (direct, request(f"127.0.0.1:{direct}", None, path, body))
                targets[kind, "gateway"] = (port, request(f"127.0.0.1:{port}", key, path, body))
            for target in targets.values():  # warm-up, and every answer must be a 200
                result = asyncio.run(run("127.0.0.1", target[0], target[1], 4, 100))
                assert set(result["statuses"]) == {200}, result["statuses"]
            p50 = {t: [] for t in targets}
            rps = {t: [] for t in targets}
            for _ in range(args.rounds):
                for t, (target_port, raw) in targets.items():
                    p50[t].append(asyncio.run(run("127.0.0.1", target_port, raw, 1, args.requests // 2))["p50_ms"])
                    rps[t].append(asyncio.run(run("127.0.0.1", target_port, raw, 4, args.requests))["rps"])
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()

    med = {t: (statistics.median(p50[t]), statistics.median(rps[t])) for t in targets}
    print(f"{'':22} {'p50, c=1':>10} {'req/s, c=4':>11}")
    for (kind, via), (lat, thr) in med.items():
        print(f"{kind + ', ' + via:22} {lat:8.2f} ms {thr:11.0f}")
    added = {kind: med[kind, "gateway"][0] - med[kind, "direct"][0] for kind in bodies}
    ratio = added["rerank"] / added["embeddings"]
    throughput = med["rerank", "gateway"][1] / med["embeddings", "gateway"][1]
    print(f"\nadded p50: rerank {added['rerank']:.2f} ms, embeddings {added['embeddings']:.2f} ms -> ratio {ratio:.2f}")
    print(f"{'PASS' if ratio <= 1.2 else 'MISS'}  rerank's added p50 / embeddings' {ratio:.2f} (target <= 1.2)")
    print(f"{'PASS' if throughput >= 0.8 else 'MISS'}  gateway throughput, rerank / embeddings {throughput:.2f} "
          f"(target >= 0.8)")


if __name__ == "__main__":
    main()
