"""Verifying stored models: a full re-hash (pull, import, `seekstack verify`) or a fast check
(every load: signature, sizes, and the files' stat as of the last full verify)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .signing import check_signature, load_key
from .store import Manifest, Store, sha256_file


@dataclass
class Verdict:
    ok: bool = True
    problems: list[str] = field(default_factory=list)   # one line per bad file or signature
    signed_by: str | None = None

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


def _stat_path(store: Store, manifest: Manifest) -> Path:
    return store.manifests / manifest.name / f"{manifest.version}.verified"


def verify(store: Store, manifest: Manifest, *, full: bool = True, trusted_keys: list[Path] = (),
           require_signature: bool = False) -> Verdict:
    verdict = Verdict()
    keys = [load_key(k) for k in trusted_keys]
    if keys or require_signature:
        good, who = check_signature(manifest, keys)
        if good:
            verdict.signed_by = who
        elif require_signature or manifest.signatures:
            verdict.fail(f"signature: {who}")
    recorded = {}
    stat_file = _stat_path(store, manifest)
    if not full and stat_file.exists():
        recorded = json.loads(stat_file.read_text())
    for entry in manifest.files:
        blob = store.blob(entry)
        try:
            st = blob.stat()
        except FileNotFoundError:
            verdict.fail(f"{entry.path}: missing from the store")
            continue
        if st.st_size != entry.size:
            verdict.fail(f"{entry.path}: size {st.st_size} bytes, the manifest says {entry.size}")
            continue
        if full:
            actual = sha256_file(blob)
            if actual != entry.sha256:
                verdict.fail(f"{entry.path}: sha256 {actual[:16]}… does not match the manifest's {entry.sha256[:16]}…")
        elif recorded.get(entry.sha256) != [st.st_size, st.st_mtime_ns]:
            verdict.fail(f"{entry.path}: changed since its last full verify — run `seekstack verify {manifest.name}`")
    if full and verdict.ok:
        record_verified(store, manifest)
    return verdict


def record_verified(store: Store, manifest: Manifest) -> None:
    """Note each file's size and mtime now that its hash is known good: the fast check at every
    load compares against this (pull and import hash files on the way in, so they call it too)."""
    seen = {}
    for entry in manifest.files:
        st = store.blob(entry).stat()
        seen[entry.sha256] = [st.st_size, st.st_mtime_ns]
    stat_file = _stat_path(store, manifest)
    staging = stat_file.with_suffix(".tmp")
    staging.write_text(json.dumps(seen))
    os.replace(staging, stat_file)
