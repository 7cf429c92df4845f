"""The container image builds and serves. No container registry is reachable from this machine,
so the base — Debian bookworm with its Python, what `python:3.11-slim-bookworm` is — is made
here with debootstrap (once; kept in ~/.cache/seekstack-tests). Then `make image` builds the
Containerfile on it with buildah, the image's own configuration is read (entrypoint, command,
user, state directory), and the image runs `seekstack serve`: as its non-root user, with its
state on a volume, the official openai client gets an answer from the embedded model. And the
pods `seekstack deploy kubernetes` renders run from it as rendered."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from openai import OpenAI

from conftest import ROOT, SEEKSTACK, free_port

from seekstack import kubernetes

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


def working_container(env: dict, image: str) -> str:
    """A container of the image whose volumes are the mounts each `buildah run` gives it, as under
    `docker run -v` or a pod. buildah 1.28 also mounts the image's own VOLUME, an anonymous one,
    at the same path, in no fixed order: about one run in eight wrote the state into it rather
    than into the test's directory (measured, with the state and config mounts: 4 runs of 32 lost
    the state; 0 of 24 once the container's VOLUME was removed)."""
    container = buildah(env, "from", "--quiet", image).stdout.strip()
    buildah(env, "config", "--volume", "/var/lib/seekstack-", container)
    return container


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
    container = working_container(buildah_env, image)
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    # buildah run executes the command itself (not the entrypoint); loopback: the container shares
    # this machine's network under chroot isolation
    proc = subprocess.Popen(["buildah", "run", "--volume", f"{state}:/var/lib/seekstack:rw", container, "--",
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


def test_the_kubernetes_pods_run_from_the_image_as_rendered(tmp_path, buildah_env, image, postgres):
    """`deploy kubernetes` renders pods for this image; here they run from it as rendered — the
    gateway pod's init container installs the pepper, then its container and the engines pod's
    run their args, with their environment, the ConfigMaps and Secrets where the pods mount them
    — and a request goes gateway → engine. What the cluster provides is stood in for: the pods'
    own network is this machine's, so their fixed ports become free ones and the engines'
    Service name the engine's loopback address; PostgreSQL is a real server here."""
    (tmp_path / "seekstack.yaml").write_text(yaml.safe_dump({
        "storage": {"url": postgres.new_database()}, "quotas": {"store": "memory"},
        "models": [{"name": "smollm2", "source": "embedded", "context": 512, "slots": 2, "threads": 1}]}))
    done = subprocess.run([*SEEKSTACK, "deploy", "kubernetes", "--config", str(tmp_path / "seekstack.yaml"),
                           "--output", str(tmp_path / "k8s"), "--gateways", "1", "--image", image],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    docs = [d for p in (tmp_path / "k8s").glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs if d["kind"] == "StatefulSet"}
    configs = {d["metadata"]["name"]: yaml.safe_load(d["data"]["seekstack.yaml"]) for d in docs if d["kind"] == "ConfigMap"}
    engine_key = secrets.token_hex(32)  # the Secret seekstack-engine-key, as envFrom gives it
    engine_port, gateway_port = free_port(), free_port()
    configs["engines-smollm2"]["models"][0]["engine"].update(host="127.0.0.1", port=engine_port)
    gateway_config = configs["seekstack-gateway"]
    gateway_config["models"][0]["engine"]["discover"] = f"http://127.0.0.1:{engine_port}"
    gateway_config["server"].update(host="127.0.0.1", port=gateway_port)

    def pod(name: str, spec: dict, config: dict, secret_files: dict[str, bytes] | None = None) -> tuple[Path, list[str]]:
        """The pod's volumes on this machine (its ConfigMap, Secrets, its state volume owned by the
        pod's fsGroup) and the `buildah run` options that mount them and set its environment."""
        root = tmp_path / name
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "seekstack.yaml").write_text(yaml.safe_dump(config))
        for relative, content in (secret_files or {}).items():
            path = root / "etc" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            os.chown(path, 0, USER)
            path.chmod(0o440)  # the Secret's defaultMode, group: the pod's fsGroup
        (root / "state").mkdir()
        os.chown(root / "state", USER, USER)
        container = spec["containers"][0]
        env = [f"{e['name']}={e['value']}" for e in container["env"] if "value" in e]
        assert "SEEKSTACK_STATE_DIR=/var/lib/seekstack/state" in env  # the config's, over the image's own
        options = ["--volume", f"{root / 'state'}:/var/lib/seekstack:rw", "--volume", f"{root / 'etc'}:/etc/seekstack:ro",
                   *(x for e in [*env, f"{kubernetes.ENGINE_KEY_ENV}={engine_key}"] for x in ("--env", e))]
        return root, options

    def run(options: list[str], command: list[str], log: Path) -> subprocess.Popen:
        return subprocess.Popen(["buildah", "run", *options, working_container(buildah_env, image), "--", *command],
                                env=buildah_env,
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT)

    procs: list[subprocess.Popen] = []
    try:
        engines_root, engines_options = pod("engines", pods["engines-smollm2"], configs["engines-smollm2"])
        procs.append(run(engines_options, ["seekstack", *pods["engines-smollm2"]["containers"][0]["args"]],
                         tmp_path / "engines.log"))
        gateway_spec = pods["seekstack-gateway"]
        gateway_root, gateway_options = pod("gateway", gateway_spec, gateway_config,
                                            {"pepper/pepper.key": secrets.token_bytes(32)})
        [init] = gateway_spec["initContainers"]
        installed = subprocess.run(["buildah", "run", *gateway_options,
                                    working_container(buildah_env, image), "--", *init["command"]],
                                   env=buildah_env, capture_output=True, text=True, timeout=120)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        pepper = gateway_root / "state" / "state" / "pepper.key"
        assert pepper.read_bytes() == (gateway_root / "etc" / "pepper" / "pepper.key").read_bytes()
        assert pepper.stat().st_mode & 0o777 == 0o600 and pepper.stat().st_uid == USER
        deadline = time.monotonic() + 120
        while "engines ready" not in (tmp_path / "engines.log").read_text():
            assert time.monotonic() < deadline and procs[0].poll() is None, (tmp_path / "engines.log").read_text()[-3000:]
            time.sleep(0.5)
        procs.append(run(gateway_options, ["seekstack", *gateway_spec["containers"][0]["args"]], tmp_path / "gateway.log"))
        url = f"http://127.0.0.1:{gateway_port}"
        probe = gateway_spec["containers"][0]["readinessProbe"]["httpGet"]["path"]
        while True:
            assert time.monotonic() < deadline and procs[1].poll() is None, (tmp_path / "gateway.log").read_text()[-3000:]
            try:
                if httpx.get(url + probe, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        key = (gateway_root / "state" / "state" / "admin.key").read_text().strip()
        client = OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=60)
        answer = client.chat.completions.create(model="smollm2", max_tokens=8,
                                                messages=[{"role": "user", "content": "Hello"}])
        assert answer.choices[0].message.content and answer.usage.completion_tokens > 0
    finally:
        for p in psutil.process_iter(["cmdline", "uids"]):  # the pods' processes: SIGTERM, as the kubelet
            if p.info["uids"] and p.info["uids"].real == USER and p.info["cmdline"] \
                    and any("seekstack" in part for part in p.info["cmdline"][:3]):
                p.terminate()
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        buildah(buildah_env, "rm", "--all", check=False)
