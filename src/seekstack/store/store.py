"""The model store: content-addressed blobs, one manifest per model version, a current pointer.

Layout under ``store.path`` (default ``<state_dir>/models``)::

    blobs/sha256/<hex>                     file contents, stored once however often they appear
    manifests/<name>/<version>.json        what a version is: files, sizes, sha256, source, …
    manifests/<name>/current               the version served by `name` (rollback moves it)
    snapshots/<name>/<version>/<file>      read-only links to the blobs, under the files' own
                                           names (split GGUF parts find each other there)
    tmp/                                   downloads and imports in progress (never served)

Every write goes to ``tmp/`` and is renamed into place once complete and hashed, so a half-
written file is never presented as a model. Model names are ``[a-z0-9][a-z0-9._-]*`` (a ``/`` in
an ``org/repo`` source becomes ``--``); file paths inside a manifest must stay inside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from ..errors import ConflictError, InvalidRequestError, ModelNotFoundError

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
CHUNK = 4 * 2**20


@dataclass
class FileEntry:
    path: str          # relative, POSIX, inside the model
    size: int
    sha256: str


@dataclass
class Manifest:
    name: str
    version: int
    files: list[FileEntry]
    format: str                        # gguf | safetensors | other
    source: str
    revision: str | None = None        # pinned commit / ETag, when the source has one
    license: str | None = None
    created: float = field(default_factory=time.time)
    signatures: list[dict[str, str]] = field(default_factory=list)
    unchanged: bool = field(default=False, compare=False)  # not stored: this pull found the same files as before

    def body(self) -> bytes:
        """The signed bytes, canonical JSON: what the model *is* — every file's path, size and sha256,
        format, source, revision, license. Not the local name, version number or pull time, so a
        signed model keeps its signature when another site imports it under its own name."""
        data = asdict(self)
        for local in ("signatures", "name", "version", "created", "unchanged"):
            data.pop(local)
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("unchanged")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        try:
            files = [FileEntry(**f) for f in data["files"]]
            manifest = cls(**{**data, "files": files})
        except (KeyError, TypeError) as exc:
            raise InvalidRequestError(f"manifest is malformed ({exc})", fix="re-import the model") from None
        for f in manifest.files:
            safe_relpath(f.path)
            if not re.fullmatch(r"[0-9a-f]{64}", f.sha256):
                raise InvalidRequestError(f"manifest lists {f.path} with a malformed sha256", fix="re-import the model")
        return manifest


def safe_relpath(path: str) -> str:
    """Refuse a path that is absolute or climbs out (``../``) of the model."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts or "\\" in path or any(part in ("", ".") for part in p.parts):
        raise InvalidRequestError(f"the path {path!r} would escape the model store", fix="remove it from the manifest or archive")
    return str(p)


def model_name(text: str) -> str:
    name = text.strip().lower().replace("/", "--")
    if not NAME.match(name):
        raise InvalidRequestError(f"{text!r} is not a valid model name", fix="use letters, digits, '.', '_' and '-' (e.g. deepseek-r1-7b)")
    return name


def split_ref(ref: str) -> tuple[str, int | None]:
    """``name@3`` → ("name", 3); ``name`` → ("name", None)."""
    name, _, version = ref.partition("@")
    if version and not version.isdigit():
        raise InvalidRequestError(f"{ref!r}: the version after @ must be a number", fix="e.g. deepseek-r1-7b@2")
    return model_name(name), int(version) if version else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Store:
    def __init__(self, root: Path):
        self.root = Path(root).expanduser()
        self.blobs = self.root / "blobs" / "sha256"
        self.manifests = self.root / "manifests"
        self.snapshots = self.root / "snapshots"
        self.tmp = self.root / "tmp"

    # ------------------------------------------------------------ writing

    def tmp_dir(self) -> Path:
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self.tmp

    def add_blob(self, path: Path, sha256: str | None = None, *, move: bool = False) -> str:
        """Store a complete file by its hash (once); returns the hash."""
        digest = sha256 or sha256_file(path)
        target = self.blobs / digest
        if target.exists():
            if move:
                path.unlink()
            return digest
        self.blobs.mkdir(parents=True, exist_ok=True)
        staging = self.tmp_dir() / f"blob-{digest}.{os.getpid()}"
        if move:
            os.replace(path, staging)
        else:
            shutil.copyfile(path, staging)
        os.chmod(staging, 0o444)
        os.replace(staging, target)
        return digest

    def commit(self, name: str, files: list[FileEntry], *, format: str, source: str, revision: str | None = None,
               license: str | None = None, signatures: Iterable[dict[str, str]] = ()) -> Manifest:
        """Write a new version of ``name`` for blobs already stored, and make it current — unless
        the newest version has exactly these files: then that one, marked ``unchanged``."""
        name = model_name(name)
        for f in files:
            safe_relpath(f.path)
            if not (self.blobs / f.sha256).exists():
                raise InvalidRequestError(f"{f.path}: its blob is not in the store", fix="add the file before committing")
        latest = max(self.versions(name), default=0)
        if latest:
            newest = self.manifest(f"{name}@{latest}")
            if sorted((f.path, f.sha256) for f in newest.files) == sorted((f.path, f.sha256) for f in files):
                newest.unchanged = True
                return newest
        directory = self.manifests / name
        directory.mkdir(parents=True, exist_ok=True)
        version = max(self.versions(name), default=0) + 1
        manifest = Manifest(name, version, files, format, source, revision, license, signatures=list(signatures))
        self._write_manifest(manifest)
        self._link(manifest)
        self.set_current(name, version)
        return manifest

    def _write_manifest(self, manifest: Manifest) -> None:
        path = self.manifests / manifest.name / f"{manifest.version}.json"
        staging = path.with_suffix(".json.tmp")
        staging.write_text(json.dumps(manifest.to_json(), indent=1))
        os.replace(staging, path)

    def save_signatures(self, manifest: Manifest) -> None:
        self._write_manifest(manifest)

    def _link(self, manifest: Manifest) -> None:
        snap = self.snapshots / manifest.name / str(manifest.version)
        for f in manifest.files:
            link = snap / f.path
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(self.blobs / f.sha256)

    def set_current(self, name: str, version: int) -> None:
        pointer = self.manifests / name / "current"
        staging = pointer.with_suffix(".tmp")
        staging.write_text(f"{version}\n")
        os.replace(staging, pointer)

    # ------------------------------------------------------------ reading

    def names(self) -> list[str]:
        return sorted(p.name for p in self.manifests.iterdir() if p.is_dir()) if self.manifests.exists() else []

    def versions(self, name: str) -> list[int]:
        directory = self.manifests / name
        return sorted(int(p.stem) for p in directory.glob("*.json") if p.stem.isdigit()) if directory.exists() else []

    def current(self, name: str) -> int | None:
        pointer = self.manifests / name / "current"
        try:
            return int(pointer.read_text().strip())
        except (OSError, ValueError):
            versions = self.versions(name)
            return versions[-1] if versions else None

    def manifest(self, ref: str) -> Manifest:
        name, version = split_ref(ref)
        version = version if version is not None else self.current(name)
        path = self.manifests / name / f"{version}.json"
        if version is None or not path.exists():
            if not self.versions(name):
                raise self._no_model(name)
            raise ModelNotFoundError(f"{name}@{version} is not in the store", fix=f"versions: {self.versions(name)}")
        try:
            return Manifest.from_json(json.loads(path.read_text()))
        except json.JSONDecodeError:
            raise InvalidRequestError(f"the manifest of {name}@{version} is not JSON", fix="re-import the model") from None

    def path_of(self, manifest: Manifest) -> Path:
        """What an engine loads: the (first) GGUF file, or the snapshot folder."""
        snap = self.snapshots / manifest.name / str(manifest.version)
        ggufs = sorted(f.path for f in manifest.files if f.path.lower().endswith(".gguf"))
        return snap / ggufs[0] if ggufs else snap

    def blob(self, entry: FileEntry) -> Path:
        return self.blobs / entry.sha256

    # ------------------------------------------------------------ versions and removal

    def _no_model(self, name: str) -> ModelNotFoundError:
        known = ", ".join(self.names()) or "none"
        return ModelNotFoundError(f"no model {name!r} in the store (models: {known})",
                                  fix="see `seekstack models`, or pull it")

    def rollback(self, name: str, version: int | None = None) -> int:
        name = model_name(name)
        versions = self.versions(name)
        if not versions:
            raise self._no_model(name)
        current = self.current(name)
        if version is None:
            older = [v for v in versions if current is not None and v < current]
            if not older:
                raise ConflictError(f"{name} has no version before {current}", fix="see `seekstack models history NAME`")
            version = older[-1]
        if version not in versions:
            raise ModelNotFoundError(f"{name}@{version} is not in the store", fix=f"versions: {versions}")
        self.set_current(name, version)
        return version

    def remove(self, ref: str) -> list[int]:
        """Remove one version, or every version when none is given; blobs stay until `gc`."""
        name, version = split_ref(ref)
        versions = self.versions(name)
        if not versions:
            raise self._no_model(name)
        gone = [version] if version is not None else versions
        for v in gone:
            if v not in versions:
                raise ModelNotFoundError(f"{name}@{v} is not in the store", fix=f"versions: {versions}")
            (self.manifests / name / f"{v}.json").unlink()
            shutil.rmtree(self.snapshots / name / str(v), ignore_errors=True)
        left = self.versions(name)
        if not left:
            shutil.rmtree(self.manifests / name, ignore_errors=True)
            shutil.rmtree(self.snapshots / name, ignore_errors=True)
        elif self.current(name) not in left:
            self.set_current(name, left[-1])
        return gone

    def gc(self) -> tuple[int, int]:
        """Delete blobs no manifest references, and stale temporary files; (files, bytes) freed."""
        used = {f.sha256 for name in self.names() for v in self.versions(name) for f in self.manifest(f"{name}@{v}").files}
        count = freed = 0
        for blob in self.blobs.glob("*") if self.blobs.exists() else ():
            if blob.name not in used:
                freed += blob.stat().st_size
                blob.chmod(0o644)
                blob.unlink()
                count += 1
        if self.tmp.exists():
            for leftover in self.tmp.iterdir():
                if leftover.is_file() and not leftover.name.endswith(".part"):  # .part files resume a pull
                    freed += leftover.stat().st_size
                    leftover.unlink()
                    count += 1
        return count, freed
