"""The model store against a real loopback file server with faults: resume, corruption, progress,
404s; tampering, signatures and the trust policy; versions, rollback, export/import, gc."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess

import pytest
import yaml

from conftest import SEEKSTACK, Server
from fileserver import Faults, FileServer
from seekstack.embedded import embedded_model_path
from seekstack.errors import InvalidRequestError, ServerUnreachableError
from seekstack.store import Store, verify
from seekstack.store.pull import PullOptions, pull
from seekstack.store.signing import keygen, load_key, sign
from seekstack.store.transfer import EXPORT_MANIFEST, export_model, import_path

FAST = PullOptions(backoff=0.01, retries=2)


def tiny_gguf(name: str, payload: bytes) -> bytes:
    """A valid GGUF v3 file: two metadata strings, one tensor, aligned data."""
    def string(s: str) -> bytes:
        raw = s.encode()
        return struct.pack("<Q", len(raw)) + raw

    meta = [("general.architecture", "llama"), ("general.name", name)]
    out = b"GGUF" + struct.pack("<IQQ", 3, 1, len(meta))
    for key, value in meta:
        out += string(key) + struct.pack("<I", 8) + string(value)
    out += string("w") + struct.pack("<I", 1) + struct.pack("<Q", len(payload)) + struct.pack("<I", 0) + struct.pack("<Q", 0)
    out += b"\0" * ((-len(out)) % 32)
    return out + payload


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def files():
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


def cli(*args, config=None, timeout=120):
    extra = ["--config", str(config)] if config else []
    return subprocess.run([*SEEKSTACK, *args, *extra], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "160"})


def store_config(tmp_path, **store) -> "os.PathLike":
    path = tmp_path / "seekstack.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "store": {"path": str(tmp_path / "store"), **store}}))
    return path


# ------------------------------------------------------------------ pulling


def test_a_dropped_connection_resumes_where_it_stopped(store, files):
    data = tiny_gguf("a", os.urandom(3_000_000))
    files.files["/m/model.gguf"] = data
    files.faults["/m/model.gguf"] = Faults(drop_after=1_000_000, drops=1)
    manifest = pull(store, files.url + "/m/model.gguf", options=FAST)
    gets = [e for e in files.log if e["path"] == "/m/model.gguf"]
    assert [e["range"] for e in gets] == [None, "bytes=1000000-"]
    assert [e["sent"] for e in gets] == [1_000_000, len(data) - 1_000_000]  # nothing fetched twice
    assert manifest.files[0].sha256 == sha(data) and store.blob(manifest.files[0]).read_bytes() == data
    assert manifest.revision  # the ETag pins what was fetched
    assert store.path_of(manifest).name == "model.gguf" and store.path_of(manifest).read_bytes() == data


def test_an_interrupted_pull_leaves_no_model_and_the_next_pull_resumes(store, files):
    data = tiny_gguf("b", os.urandom(2_000_000))
    files.files["/m/b.gguf"] = data
    files.faults["/m/b.gguf"] = Faults(drop_after=500_000, drops=3)  # more drops than retries
    with pytest.raises(ServerUnreachableError, match="download failed after 2 retries.*bytes kept"):
        pull(store, files.url + "/m/b.gguf", options=FAST)
    assert store.names() == []  # nothing that looks usable
    kept = sum(e["sent"] for e in files.log)
    assert kept == 3 * 500_000 and next(store.tmp.glob("*.part")).stat().st_size == kept  # kept for resuming
    manifest = pull(store, files.url + "/m/b.gguf", options=FAST)  # the fourth request is clean
    assert store.blob(manifest.files[0]).read_bytes() == data
    assert sum(e["sent"] for e in files.log) == len(data)  # across both pulls, every byte exactly once


def test_corrupted_bytes_are_detected_against_the_published_hash(store, files):
    good = tiny_gguf("c", os.urandom(400_000))
    files.repos["org/model"] = {"model.gguf": good}
    commit = hashlib.sha1(b"org/model").hexdigest()
    files.faults[f"/org/model/resolve/{commit}/model.gguf"] = Faults(corrupt_at=200_000)
    with pytest.raises(InvalidRequestError, match="corrupt"):
        pull(store, "hf:org/model", options=PullOptions(hf_endpoint=files.url, backoff=0.01))
    assert store.names() == [] and not list(store.tmp.glob("*.part"))
    with pytest.raises(InvalidRequestError, match="corrupt"):  # a --sha256 for a plain URL does the same
        files.files["/x/model.gguf"] = good
        pull(store, files.url + "/x/model.gguf", options=FAST, sha256=sha(b"something else"))


def test_a_slow_server_shows_progress(store, files):
    data = tiny_gguf("d", os.urandom(1_000_000))
    files.files["/slow/d.gguf"] = data
    files.faults["/slow/d.gguf"] = Faults(delay=0.01)

    class Recorder:
        def __init__(self):
            self.events = []

        def start(self, name, total, done):
            self.events.append(("start", name, total, done))

        def advance(self, name, n):
            self.events.append(("advance", name, n))

    recorder = Recorder()
    pull(store, files.url + "/slow/d.gguf", options=FAST, progress=recorder)
    assert recorder.events[0] == ("start", "d.gguf", len(data), 0)
    advances = [e[2] for e in recorder.events if e[0] == "advance"]
    assert len(advances) >= 10 and sum(advances) == len(data)


def test_the_cli_pull_prints_progress_and_the_result(tmp_path, files):
    data = tiny_gguf("e", os.urandom(300_000))
    files.files["/e.gguf"] = data
    result = cli("pull", files.url + "/e.gguf", "--name", "e", config=store_config(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "pulled e@1: 1 file(s)" in result.stdout and "e.gguf" in result.stdout


def test_a_404_is_a_clear_error_and_leaves_nothing(store, files, tmp_path):
    with pytest.raises(InvalidRequestError, match="not found.*HTTP 404"):
        pull(store, files.url + "/missing.gguf", options=FAST)
    assert store.names() == []
    result = cli("pull", "hf:org/nothing", config=store_config(tmp_path, hf_endpoint=files.url))
    assert result.returncode == 1 and "was not found (HTTP 404)" in result.stderr and "Traceback" not in result.stderr


def test_a_url_scheme_we_do_not_fetch_is_named(store):
    for source in ("ftp://mirror.example/model.gguf", "s3://bucket/model.gguf"):
        with pytest.raises(InvalidRequestError, match=r"is not supported") as info:
            pull(store, source, options=FAST)
        assert source.partition("://")[0] + "://" in info.value.message and "https://" in info.value.fix
    assert store.names() == []


def test_hf_pull_pins_the_commit_and_keeps_split_gguf_together(store, files):
    part1, part2 = tiny_gguf("p1", os.urandom(100_000)), tiny_gguf("p2", os.urandom(100_000))
    files.repos["org/big"] = {"big-00001-of-00002.gguf": part1, "big-00002-of-00002.gguf": part2, "README.md": b"hi"}
    manifest = pull(store, "hf:org/big:*.gguf", options=PullOptions(hf_endpoint=files.url))
    assert manifest.revision == hashlib.sha1(b"org/big").hexdigest() and manifest.source == "hf:org/big:*.gguf"
    assert sorted(f.path for f in manifest.files) == ["big-00001-of-00002.gguf", "big-00002-of-00002.gguf"]
    first = store.path_of(manifest)
    assert first.name == "big-00001-of-00002.gguf" and (first.parent / "big-00002-of-00002.gguf").read_bytes() == part2
    assert manifest.name == "big" and manifest.format == "gguf"


def test_identical_files_are_stored_once_and_versions_accumulate(store, tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_gguf("f", os.urandom(50_000)))
    one, same = import_path(store, model, "m"), import_path(store, model, "m")
    assert (one.version, same.version, same.unchanged) == (1, 1, True) and len(list(store.blobs.iterdir())) == 1
    model.write_bytes(tiny_gguf("f", os.urandom(50_000)))  # new content: a new version beside the first
    two = import_path(store, model, "m")
    assert (two.version, two.unchanged) == (2, False) and len(list(store.blobs.iterdir())) == 2


# ------------------------------------------------------------------ safety


def test_pickle_is_refused_unless_allowed(store, tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 pickle")
    with pytest.raises(InvalidRequestError, match="pickle file: loading it can run arbitrary code"):
        import_path(store, folder, "p")
    assert store.names() == []
    assert import_path(store, folder, "p", allow_pickle=True).format == "pickle"


def test_bad_gguf_and_safetensors_headers_are_refused(store, tmp_path):
    broken = tmp_path / "cut.gguf"
    broken.write_bytes(tiny_gguf("g", b"x" * 1000)[:40])
    with pytest.raises(InvalidRequestError, match="not a complete GGUF"):
        import_path(store, broken)
    bad = tmp_path / "st"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(struct.pack("<Q", 8) + b"[1,2,3]x")
    with pytest.raises(InvalidRequestError, match="not a valid safetensors file"):
        import_path(store, bad)


def test_a_path_that_escapes_the_store_is_refused(store, tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_gguf("h", b"y" * 100))
    exported = export_model(store, import_path(store, model, "h"), tmp_path / "out")
    manifest = json.loads((exported / EXPORT_MANIFEST).read_text())
    manifest["files"][0]["path"] = "../../etc/evil.gguf"
    (exported / EXPORT_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InvalidRequestError, match="would escape the model store"):
        import_path(Store(tmp_path / "other"), exported)


# ------------------------------------------------------------------ signatures and tampering


@pytest.fixture
def signed(store, tmp_path):
    model = tmp_path / "s.gguf"
    model.write_bytes(tiny_gguf("s", os.urandom(20_000)))
    manifest = import_path(store, model, "s")
    private, public = keygen(tmp_path / "keys" / "site")
    sign(manifest, load_key(private))
    store.save_signatures(manifest)
    return manifest, private, public


def test_keys_are_private_and_never_overwritten(signed):
    _, private, public = signed
    assert oct(private.stat().st_mode & 0o777) == "0o600" and b"PUBLIC KEY" in public.read_bytes()
    with pytest.raises(InvalidRequestError, match="never overwritten"):
        keygen(private.with_suffix(""))


def test_an_intact_signed_model_verifies(store, signed):
    manifest, _, public = signed
    verdict = verify(store, store.manifest("s"), trusted_keys=[public], require_signature=True)
    assert verdict.ok and verdict.signed_by == manifest.signatures[0]["key_id"]


def test_a_flipped_byte_is_named(store, signed):
    manifest, _, public = signed
    blob = store.blob(manifest.files[0])
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[5000] ^= 1
    blob.write_bytes(bytes(data))
    verdict = verify(store, store.manifest("s"), trusted_keys=[public])
    assert not verdict.ok and verdict.problems == [verdict.problems[0]] and verdict.problems[0].startswith("s.gguf: sha256")
    fast = verify(store, store.manifest("s"), full=False, trusted_keys=[public])  # what each load runs
    assert not fast.ok and "changed since its last full verify" in fast.problems[0]


def test_a_swapped_file_an_edited_manifest_and_a_wrong_key_are_caught(store, signed, tmp_path):
    manifest, _, public = signed
    other = tmp_path / "o.gguf"
    other.write_bytes(tiny_gguf("o", os.urandom(20_000)))
    blob = store.blob(manifest.files[0])
    blob.chmod(0o644)
    blob.write_bytes(other.read_bytes())  # same size, other content
    assert "sha256" in verify(store, store.manifest("s"), trusted_keys=[public]).problems[0]
    path = store.manifests / "s" / "1.json"
    edited = json.loads(path.read_text())
    edited["source"] = "https://evil.example/model.gguf"
    path.write_text(json.dumps(edited))
    verdict = verify(store, store.manifest("s"), trusted_keys=[public], require_signature=True)
    assert any("does not match the manifest (edited or tampered)" in p for p in verdict.problems)
    _, stranger = keygen(tmp_path / "keys" / "stranger")
    verdict = verify(store, store.manifest("s"), trusted_keys=[stranger], require_signature=True)
    assert any("untrusted key" in p for p in verdict.problems)


def test_hmac_signatures_work_too(store, tmp_path):
    model = tmp_path / "k.gguf"
    model.write_bytes(tiny_gguf("k", b"z" * 500))
    manifest = import_path(store, model, "k")
    secret, none = keygen(tmp_path / "hmac", "hmac")
    assert none is None
    sign(manifest, load_key(secret))
    store.save_signatures(manifest)
    assert verify(store, store.manifest("k"), trusted_keys=[secret], require_signature=True).ok


def test_export_and_import_round_trip_with_signatures(store, signed, tmp_path):
    manifest, _, public = signed
    exported = export_model(store, manifest, tmp_path / "usb")
    assert sorted(p.name for p in exported.iterdir()) == sorted([EXPORT_MANIFEST, "s.gguf"])
    site_b = Store(tmp_path / "site-b")
    arrived = import_path(site_b, exported, "approved-s")
    assert arrived.signatures == manifest.signatures and arrived.name == "approved-s"
    assert verify(site_b, site_b.manifest("approved-s"), trusted_keys=[public], require_signature=True).ok
    (exported / "s.gguf").write_bytes(tiny_gguf("s", os.urandom(20_000)))  # altered in transit
    with pytest.raises(InvalidRequestError, match="altered in transit"):
        import_path(Store(tmp_path / "site-c"), exported)


def test_the_cli_verify_names_the_bad_file_and_exits_2(tmp_path):
    config = store_config(tmp_path)
    model = tmp_path / "v.gguf"
    model.write_bytes(tiny_gguf("v", os.urandom(10_000)))
    assert cli("import", str(model), "--name", "v", config=config).returncode == 0
    assert cli("keygen", str(tmp_path / "k")).returncode == 0
    signed = cli("sign", "v", "--key", str(tmp_path / "k.key"), config=config)
    assert signed.returncode == 0 and "signed v@1 (ed25519" in signed.stdout
    ok = cli("verify", "v", "--key", str(tmp_path / "k.pub"), config=config)
    assert ok.returncode == 0 and "signature by" in ok.stdout
    listed = cli("models", config=config).stdout  # installed models are listed beside the configured ones
    assert "store (" in listed and "│ v " in listed and "gguf" in listed
    blob = next((tmp_path / "store" / "blobs" / "sha256").iterdir())
    blob.chmod(0o644)
    blob.write_bytes(b"X" + blob.read_bytes()[1:])
    bad = cli("verify", "v", "--key", str(tmp_path / "k.pub"), config=config)
    assert bad.returncode == 2 and "bad v.gguf: sha256" in bad.stdout


# ------------------------------------------------------------------ versions, rollback, gc, serving


def test_history_rollback_rm_and_gc(store, tmp_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(tiny_gguf("a", os.urandom(10_000)))
    b.write_bytes(tiny_gguf("b", os.urandom(10_000)))
    import_path(store, a, "m")
    import_path(store, b, "m")
    assert store.versions("m") == [1, 2] and store.current("m") == 2
    assert store.rollback("m") == 1 and store.manifest("m").version == 1
    assert store.remove("m@2") == [2] and store.versions("m") == [1]
    count, freed = store.gc()
    assert count == 1 and freed == b.stat().st_size and len(list(store.blobs.iterdir())) == 1


def test_rm_asks_unless_yes(tmp_path):
    config = store_config(tmp_path)
    model = tmp_path / "r.gguf"
    model.write_bytes(tiny_gguf("r", b"1" * 100))
    cli("import", str(model), "--name", "r", config=config)
    refused = subprocess.run([*SEEKSTACK, "rm", "r", "--config", str(config)], input="n\n", capture_output=True, text=True)
    assert refused.returncode == 1 and (tmp_path / "store" / "manifests" / "r" / "1.json").exists()
    done = cli("rm", "r@1", "--yes", config=config)
    assert done.returncode == 0 and not (tmp_path / "store" / "manifests" / "r").exists()


def test_rollback_then_serve_runs_the_old_version(tmp_path):
    """v1 is the real embedded model, v2 a newer (unloadable) file; after rollback, serve loads v1."""
    config = {"state_dir": str(tmp_path / "state"), "store": {"path": str(tmp_path / "store")},
              "models": [{"name": "tiny", "store": "tiny", "context": 512, "slots": 1}]}
    store = Store(tmp_path / "store")
    import_path(store, embedded_model_path(), "tiny")
    newer = tmp_path / "newer.gguf"
    newer.write_bytes(tiny_gguf("newer", b"0" * 1000))
    import_path(store, newer, "tiny")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli("models", "rollback", "tiny", config=path).returncode == 0
    history = json.loads(cli("models", "history", "tiny", "--json", config=path).stdout)
    assert [(h["version"], h["current"]) for h in history] == [(1, True), (2, False)]
    server = Server(tmp_path, {k: v for k, v in config.items() if k != "state_dir"}, name="tiny")
    server.start()
    try:
        r = server.http.post("/v1/chat/completions", json={"model": "tiny", "max_tokens": 3,
                                                           "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200
    finally:
        server.stop()
    assert "tiny: tiny@1 from the store" in server.log_path.read_text()
    assert store.manifest("tiny@1").license == "apache-2.0"  # from the GGUF's own metadata


def test_serve_refuses_unsigned_or_tampered_models_under_the_trust_policy(tmp_path):
    store = Store(tmp_path / "store")
    model = tmp_path / "t.gguf"
    model.write_bytes(tiny_gguf("t", os.urandom(5_000)))
    import_path(store, model, "t")
    private, public = keygen(tmp_path / "trusted")
    other = tmp_path / "u.gguf"
    other.write_bytes(tiny_gguf("u", os.urandom(5_000)))
    tampered = import_path(store, other, "u")
    sign(tampered, load_key(private))
    store.save_signatures(tampered)
    blob = store.blob(tampered.files[0])
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")  # signed, then changed on disk
    config = tmp_path / "trust.yaml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"),
        "store": {"path": str(tmp_path / "store"), "require_signature": True, "trusted_keys": [str(public)]},
        "models": [{"name": "t", "store": "t"}, {"name": "u", "store": "u"}, {"name": "plain", "source": "embedded"}]}))
    result = cli("serve", "--config", str(config), "--port", "0")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "t (t@1): signature: the manifest is not signed" in result.stderr
    assert "u (u@1): u.gguf: changed since its last full verify" in result.stderr
    assert "plain: the embedded model is not a signed store model" in result.stderr
    assert not (tmp_path / "state" / "admin.key").exists()


def test_config_check_resolves_store_models_as_serve_does(tmp_path):
    store = Store(tmp_path / "store")
    model = tmp_path / "t.gguf"
    model.write_bytes(tiny_gguf("t", os.urandom(5_000)))
    import_path(store, model, "t")
    base = {"state_dir": str(tmp_path / "state"), "store": {"path": str(tmp_path / "store")}}
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({**base, "models": [{"name": "t", "store": "t"}]}))
    result = cli("config", "check", str(good))
    assert result.returncode == 0 and "ok:" in result.stdout, result.stderr
    bad = tmp_path / "bad.yaml"  # a schema problem too: the store is checked all the same
    bad.write_text(yaml.safe_dump({**base, "server": {"port": 70000},
                                   "models": [{"name": "t", "store": "t"}, {"name": "gone", "store": "gone"}]}))
    result = cli("config", "check", str(bad))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "2 problem(s)" in result.stderr and "server.port" in result.stderr
    assert "gone: no model 'gone' in the store" in result.stderr and "pull it" in result.stderr
    assert "not resolved" not in result.stderr


def test_models_catalog_lists_the_deepseek_family():
    result = cli("models", "catalog", "--json")
    assert result.returncode == 0, result.stderr
    names = {m["name"] for m in json.loads(result.stdout)}
    assert names == {"deepseek-r1", "deepseek-r1-0528", "deepseek-v3", "deepseek-v3.1", "deepseek-v3.2",
                     "deepseek-v2-lite", "deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b",
                     "deepseek-r1-distill-llama-8b", "deepseek-r1-distill-qwen-14b", "deepseek-r1-distill-qwen-32b",
                     "deepseek-r1-distill-llama-70b"}


def test_an_unknown_catalog_name_is_refused_with_the_closest_never_replaced():
    """`plan deepseek-v3` once planned deepseek-r1 without saying so."""
    v3 = json.loads(cli("plan", "deepseek-v3", "--hardware", "8xH200", "--json").stdout)["plan"]
    assert v3["model"] == "deepseek-v3"
    v32 = json.loads(cli("plan", "deepseek-v3.2-exp", "--hardware", "8xH200", "--json").stdout)["plan"]
    assert v32["model"] == "deepseek-v3.2" and v32["context"] <= 131072
    result = cli("plan", "deepseek-v4")
    assert result.returncode == 1 and "'deepseek-v4' is not in the model catalog" in result.stderr
    assert "did you mean deepseek-v3" in result.stderr and "Traceback" not in result.stderr


def test_a_catalog_name_pulls_its_published_release_from_the_hub(store, files):
    gguf = tiny_gguf("q", os.urandom(30_000))
    files.repos["unsloth/DeepSeek-R1-Distill-Qwen-7B-GGUF"] = {
        "DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf": gguf, "DeepSeek-R1-Distill-Qwen-7B-Q8_0.gguf": b"not this one"}
    manifest = pull(store, "deepseek-r1-distill-qwen:7b-q4_k_m", options=PullOptions(hf_endpoint=files.url))
    assert manifest.name == "deepseek-r1-distill-qwen-7b-q4_k_m"
    assert [f.path for f in manifest.files] == ["DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf"]
    assert manifest.revision == hashlib.sha1(b"unsloth/DeepSeek-R1-Distill-Qwen-7B-GGUF").hexdigest()
    with pytest.raises(InvalidRequestError, match="no 'q9' release of deepseek-r1"):
        pull(store, "deepseek-r1:q9", options=PullOptions(hf_endpoint=files.url))


def test_a_large_file_comes_over_several_connections_each_resumable(store, files):
    data = tiny_gguf("big", os.urandom(3_000_000))
    files.files["/big.gguf"] = data
    files.faults["/big.gguf"] = Faults(drop_after=250_000, drops=1)  # one of the ranges breaks once
    options = PullOptions(connections=3, parallel_min=1_000_000, backoff=0.01)
    manifest = pull(store, files.url + "/big.gguf", options=options)
    assert store.blob(manifest.files[0]).read_bytes() == data and manifest.files[0].sha256 == sha(data)
    gets = [e for e in files.log if e["path"] == "/big.gguf"]
    size = len(data)
    starts = sorted(int(e["range"].removeprefix("bytes=").split("-")[0]) for e in gets)
    assert [i * size // 3 for i in range(3)] == sorted(set(starts) & {i * size // 3 for i in range(3)})
    assert len(gets) == 4 and sum(e["sent"] for e in gets) == size  # three ranges + one resumed, no byte twice
    assert not list(store.tmp.glob("*"))  # segments joined and removed


def test_modelscope_pull_pins_the_listed_commit_and_checks_hashes(store, files):
    gguf = tiny_gguf("ms", os.urandom(40_000))
    files.repos["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B-GGUF"] = {"model-q4_k_m.gguf": gguf, "README.md": b"readme"}
    manifest = pull(store, "modelscope:deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B-GGUF:*.gguf",
                    options=PullOptions(modelscope_endpoint=files.url))
    assert [f.path for f in manifest.files] == ["model-q4_k_m.gguf"] and manifest.files[0].sha256 == sha(gguf)
    assert manifest.revision == hashlib.sha1(b"deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B-GGUF").hexdigest()
    with pytest.raises(InvalidRequestError, match="HTTP 404"):
        pull(store, "modelscope:nobody/nothing", options=PullOptions(modelscope_endpoint=files.url))


def test_free_disk_is_checked_before_any_byte_is_fetched(store, files):
    files.files["/huge.gguf"] = tiny_gguf("huge", b"x" * 1000)
    files.faults["/huge.gguf"] = Faults(claimed_length=10**16)  # the server says 10 PB
    with pytest.raises(InvalidRequestError, match=r"the pull needs 10000000\.00 GB but the store has .* GB free"):
        pull(store, files.url + "/huge.gguf", options=FAST)
    assert not [e for e in files.log if e["path"] == "/huge.gguf"]  # no GET was made


def test_proxies_from_the_environment_are_honoured(store, files, monkeypatch):
    from fileserver import ForwardProxy

    proxy = ForwardProxy()
    try:
        data = tiny_gguf("px", os.urandom(50_000))
        files.files["/via/proxy.gguf"] = data
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        manifest = pull(store, files.url + "/via/proxy.gguf", options=FAST)
    finally:
        proxy.close()
    assert store.blob(manifest.files[0]).read_bytes() == data
    assert f"HEAD {files.url}/via/proxy.gguf" in proxy.seen and f"GET {files.url}/via/proxy.gguf" in proxy.seen


def test_pull_checks_sha256_for_a_local_path_too_and_an_identical_pull_is_unchanged(tmp_path):
    """--sha256 WRONG once accepted a local file (`pulled smoltest@1`); pulling the same bytes again made a new version."""
    store = Store(tmp_path / "store")
    data = tiny_gguf("smoltest", b"weights")
    model = tmp_path / "m.gguf"
    model.write_bytes(data)
    wrong = "0" * 64
    with pytest.raises(InvalidRequestError, match=f"sha256 is {sha(data)}, not the expected {wrong}"):
        pull(store, str(model), name="smoltest", sha256=wrong)
    assert store.versions("smoltest") == [] and not any((tmp_path / "store" / "blobs").rglob("*"))
    first = pull(store, str(model), name="smoltest", sha256=sha(data).upper())
    again = pull(store, str(model), name="smoltest")
    assert first.version == again.version == 1 and again.unchanged and store.versions("smoltest") == [1]
    config = store_config(tmp_path)
    said = cli("pull", str(model), "--name", "smoltest", config=config)
    assert said.returncode == 0 and "unchanged (same as smoltest@" in said.stdout, said.stdout + said.stderr


def test_messages_say_what_is_true_and_what_to_do(tmp_path):
    """verify right after sign said 'not signed'; rollback of an unknown name said 'no version before None';
    a truncated GGUF said 'not a complete GGUF file ()'."""
    config = store_config(tmp_path)
    assert cli("import", str(embedded_model_path()), "--name", "smol", config=config).returncode == 0
    assert cli("keygen", str(tmp_path / "k")).returncode == 0
    assert cli("sign", "smol", "--key", str(tmp_path / "k.key"), config=config).returncode == 0
    said = cli("verify", "smol", config=config)
    assert said.returncode == 0 and "signed by" in said.stdout and "no trusted key" in said.stdout, said.stdout
    trusted = cli("verify", "smol", "--key", str(tmp_path / "k.pub"), config=config)
    assert "valid and trusted" in trusted.stdout
    for command in (("models", "rollback", "nosuch"), ("rm", "nosuch", "--yes"), ("models", "history", "nosuch")):
        result = cli(*command, config=config)
        assert result.returncode == 1 and "no model 'nosuch'" in result.stderr and "seekstack models" in result.stderr, \
            (command, result.stderr)
        assert "None" not in result.stderr
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(embedded_model_path().read_bytes()[:5000])
    result = cli("import", str(cut), config=config)
    assert result.returncode == 1 and "it is 5,000 bytes and ends inside its header" in result.stderr
    half = tmp_path / "half.gguf"  # the header whole, the weights cut off
    half.write_bytes(embedded_model_path().read_bytes()[:50_000_000])
    result = cli("import", str(half), config=config)
    assert result.returncode == 1 and "tensors need more than" in result.stderr and "the file has 50,000,000" in result.stderr
