"""The container image builds and serves. No container registry is reachable from this machine,
so the base — Debian bookworm with its Python, what `python:3.11-slim-bookworm` is — is made
here with debootstrap (once; kept in ~/.cache/seekstack-tests). Then `make image` builds the
Containerfile on it with buildah, the image's own configuration is read (entrypoint, command,
user, state directory), and the image runs `seekstack serve`: as its non-root user, with its
state on a volume, the official openai client gets an answer from the embedded model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
from openai import OpenAI

from conftest import ROOT, free_port

CACHE = Path.home() / ".cache" / "seekstack-tests" / "image"
BASE = "localhost/seekstack-test-base:bookworm-1"
IMAGE = "localhost/seekstack:test"
USER = 10001


@pytest.fixture(scope="module")
def buildah_env() -> dict[str, str]:
    """buildah's storage in the cache (vfs: no overlay mounts needed), processes isolated by chroot."""
    CACHE.mkdir(parents=True, exist_ok=True)
    conf = CACHE / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{CACHE / "storage"}"\nrunroot = "{CACHE / "run"}"\n')
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "BUILDAH_ISOLATION": "chroot"}


def buildah(env: dict, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["buildah", *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0 or not check, f"buildah {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def base_image(buildah_env) -> str:
    if buildah(buildah_env, "images", "--quiet", BASE, check=False).returncode == 0:
        return BASE
    context = CACHE / "base"
    rootfs = context / "rootfs"
    subprocess.run(["rm", "-rf", str(context)], check=True)
    context.mkdir()
    made = subprocess.run(["/usr/sbin/debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                           "bookworm", str(rootfs), "http://deb.debian.org/debian"],
                          capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    (context / "Containerfile").write_text("FROM scratch\nCOPY rootfs/ /\nCMD [\"/bin/bash\"]\n")
    buildah(buildah_env, "bud", "--quiet", "-t", BASE, str(context))
    subprocess.run(["rm", "-rf", str(context)], check=True)
    return BASE


@pytest.fixture(scope="module")
def image(buildah_env, base_image):
    # this machine reaches PyPI through a TLS-inspecting proxy: its CA goes into the build (not the image)
    extra = ""
    cert = os.environ.get("PIP_CERT")
    if cert:
        extra = f"--build-arg PIP_CERT={cert} --volume {Path(cert).parent}:{Path(cert).parent}:ro"
    built = subprocess.run(["make", "-C", str(ROOT), "image", f"BASE={base_image}", f"IMAGE={IMAGE}", f"BUILD_ARGS={extra}"],
                           env=buildah_env, capture_output=True, text=True, timeout=1200)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    yield IMAGE
    buildah(buildah_env, "rm", "--all", check=False)
    buildah(buildah_env, "rmi", IMAGE, check=False)


def test_the_images_configuration_runs_seekstack_as_a_user_with_its_state_on_a_volume(buildah_env, image):
    config = json.loads(buildah(buildah_env, "inspect", "--type", "image", image).stdout)
    oci = config["OCIv1"]["config"]
    assert oci["Entrypoint"] == ["seekstack"] and oci["Cmd"] == ["serve", "--host", "0.0.0.0"]
    assert oci["User"] == f"{USER}:{USER}" and "/var/lib/seekstack" in oci["Volumes"]
    assert "SEEKSTACK_STATE_DIR=/var/lib/seekstack" in oci["Env"] and "8800/tcp" in oci["ExposedPorts"]


def test_the_image_serves_the_embedded_model_as_its_own_user(tmp_path, buildah_env, image):
    state = tmp_path / "state"  # the volume
    state.mkdir()
    os.chown(state, USER, USER)
    container = buildah(buildah_env, "from", "--quiet", image).stdout.strip()
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    # buildah run executes the command itself (not the entrypoint); loopback: the container shares
    # this machine's network under chroot isolation
    proc = subprocess.Popen(["buildah", "run", "--volume", f"{state}:/var/lib/seekstack", container, "--",
                             "seekstack", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            env=buildah_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the image's serve was not ready:\n" + (tmp_path / "serve.log").read_text()[-3000:])
        [server] = [c for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN"]
        serving = psutil.Process(server.pid)
        assert serving.uids().real == USER  # the image's USER, not root
        assert all(p.uids().real == USER for p in serving.children(recursive=True))  # the engine too
        key = (state / "admin.key").read_text().strip()
        assert (state / "admin.key").stat().st_mode & 0o777 == 0o600 and (state / "admin.key").stat().st_uid == USER
        client = OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)
        answer = client.chat.completions.create(model="smollm2-135m", max_tokens=8,
                                                messages=[{"role": "user", "content": "Hello"}])
        assert answer.choices[0].message.content and answer.usage.completion_tokens > 0
    finally:
        serving_pids = [p.pid for p in psutil.process_iter(["cmdline"])
                        if p.info["cmdline"] and "--port" in p.info["cmdline"] and str(port) in p.info["cmdline"]
                        and "buildah" not in p.info["cmdline"][0]]
        for pid in serving_pids:
            os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        buildah(buildah_env, "rm", container, check=False)
