"""Model store speed against the standard tools, in the same run (issue #5).

- Pull: `seekstack`'s downloader (hashing as it goes, then storing the blob) against `curl -o`
  of the same file from the same loopback HTTP server. Target ≥ 0.8× curl's throughput.
- Verify: a full `verify` (re-hash every file) against `sha256sum` of the same blobs.
  Target ≥ 0.9× sha256sum's rate.
Runs alternate (curl, seekstack, curl, …); the medians are compared.

Usage: python bench/store_throughput.py [--size-mb 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).parent


def serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("curl") or not shutil.which("sha256sum"):
        raise SystemExit("needs curl and sha256sum")
    from seekstack.store import Store, verify
    from seekstack.store.pull import PullOptions, pull

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "www").mkdir()
        size = args.size_mb * 2**20
        with open(tmp / "www" / "model.bin.txt", "wb") as f:  # not a model format: no header check in the way
            for _ in range(args.size_mb):
                f.write(os.urandom(2**20))
        httpd, url = serve(tmp / "www")
        curl_s, pull_s, sum_s, verify_s = [], [], [], []
        try:
            for r in range(args.rounds):
                out = tmp / "curl.out"
                t = time.perf_counter()
                subprocess.run(["curl", "-s", "-o", str(out), url + "/model.bin.txt"], check=True)
                curl_s.append(time.perf_counter() - t)
                out.unlink()
                store = Store(tmp / f"store{r}")
                t = time.perf_counter()
                manifest = pull(store, url + "/model.bin.txt", f"m{r}", PullOptions())
                pull_s.append(time.perf_counter() - t)
                blob = store.blob(manifest.files[0])
                t = time.perf_counter()
                subprocess.run(["sha256sum", str(blob)], check=True, capture_output=True)
                sum_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                assert verify(store, manifest, full=True).ok
                verify_s.append(time.perf_counter() - t)
                shutil.rmtree(store.root)
        finally:
            httpd.shutdown()
    mb = size / 1e6
    rows = {
        "curl download MB/s": mb / statistics.median(curl_s), "seekstack pull MB/s": mb / statistics.median(pull_s),
        "sha256sum MB/s": mb / statistics.median(sum_s), "seekstack verify MB/s": mb / statistics.median(verify_s),
    }
    for name, value in rows.items():
        print(f"{name:26} {value:8.0f}")
    pull_ratio = rows["seekstack pull MB/s"] / rows["curl download MB/s"]
    verify_ratio = rows["seekstack verify MB/s"] / rows["sha256sum MB/s"]
    print()
    print(f"{'PASS' if pull_ratio >= 0.8 else 'MISS'}  pull / curl        {pull_ratio:.2f}  (target >= 0.8)")
    print(f"{'PASS' if verify_ratio >= 0.9 else 'MISS'}  verify / sha256sum {verify_ratio:.2f}  (target >= 0.9)")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "store_throughput.json").write_text(json.dumps(
        {"measured": rows, "pull_ratio": pull_ratio, "verify_ratio": verify_ratio, "size_mb": args.size_mb}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
