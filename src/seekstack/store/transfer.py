"""Bringing models in and out without a network: ``import`` from a file or folder, ``export`` to a
folder (files + ``seekstack-manifest.json`` with its signatures) for carrying to another site."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from ..errors import InvalidRequestError
from .safety import check_file, model_format
from .store import FileEntry, Manifest, Store, model_name, safe_relpath, sha256_file
from .verify import record_verified

EXPORT_MANIFEST = "seekstack-manifest.json"


def _files_of(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.name, path)]
    out = []
    for file in sorted(path.rglob("*")):
        rel = file.relative_to(path).as_posix()
        if file.is_file() and not any(part.startswith(".") for part in rel.split("/")) and rel != EXPORT_MANIFEST:
            if file.is_symlink() and not file.resolve().is_relative_to(path.resolve()):
                raise InvalidRequestError(f"{rel} links outside {path}", fix="copy the real file into the folder")
            out.append((safe_relpath(rel), file))
    return out


def import_path(store: Store, path: Path, name: str | None = None, *, allow_pickle: bool = False,
                progress: Callable[[str, int], None] | None = None, sha256: str | None = None) -> Manifest:
    """Copy a file or folder into the store as a new version (hashed, validated, never half-done).

    A folder written by ``export`` brings its manifest: every file must match its sha256, and the
    signatures come along. ``sha256``: the single file's expected hash; a mismatch leaves nothing."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InvalidRequestError(f"{path} does not exist", fix="check the path")
    exported = path / EXPORT_MANIFEST if path.is_dir() else None
    carried = Manifest.from_json(json.loads(exported.read_text())) if exported and exported.exists() else None
    files = _files_of(path)
    if not files:
        raise InvalidRequestError(f"{path} has no files", fix="point at a model file or folder")
    if carried is not None:
        listed = {f.path for f in carried.files}
        extra = sorted({rel for rel, _ in files} - listed)
        if extra:
            raise InvalidRequestError(f"{path} has files its manifest does not list: {', '.join(extra[:5])}",
                                      fix="remove them, or import the folder without its manifest")
    total = sum(f.stat().st_size for _, f in files)
    free = shutil.disk_usage(store.tmp_dir()).free
    if total > free:
        raise InvalidRequestError(f"importing needs {total / 1e9:.2f} GB but the store has {free / 1e9:.2f} GB free",
                                  fix="free disk space or set store.path to a larger disk")
    if sha256 is not None and len(files) != 1:
        raise InvalidRequestError("--sha256 applies to a single file", fix="import one file, or leave --sha256 out")
    entries, formats, license = [], [], None
    for rel, file in files:
        checked = check_file(file, rel, allow_pickle=allow_pickle)
        formats.append(checked.format)
        license = license or checked.license
        staging = store.tmp_dir() / f"import-{os.getpid()}-{len(entries)}"
        shutil.copyfile(file, staging)
        digest = sha256_file(staging)
        if sha256 is not None and digest != sha256.lower():
            staging.unlink()
            raise InvalidRequestError(f"{rel}: sha256 is {digest}, not the expected {sha256.lower()}",
                                      fix="check the file and the hash you were given; nothing was stored")
        entries.append(FileEntry(rel, staging.stat().st_size, digest))
        store.add_blob(staging, digest, move=True)
        if progress:
            progress(rel, entries[-1].size)
    if carried is not None:
        by_path = {e.path: e for e in entries}
        for f in carried.files:
            got = by_path.get(f.path)
            if got is None:
                raise InvalidRequestError(f"{f.path} is listed in the manifest but missing", fix="copy the whole export folder")
            if got.sha256 != f.sha256 or got.size != f.size:
                raise InvalidRequestError(f"{f.path} does not match its manifest (sha256 differs): altered in transit",
                                          fix="export it again from the source site")
        manifest = store.commit(name or carried.name, carried.files, format=carried.format, source=carried.source,
                                revision=carried.revision, license=carried.license, signatures=carried.signatures)
    else:
        default = path.stem if path.is_file() else path.name
        manifest = store.commit(model_name(name or default), entries, format=model_format(formats),
                                source=f"file://{path.resolve()}", license=license)
    record_verified(store, manifest)  # hashed on the way in: as good as a full verify
    return manifest


def export_model(store: Store, manifest: Manifest, directory: Path) -> Path:
    """Write the model's files and its manifest (signatures included) to ``directory/<name>``."""
    target = Path(directory).expanduser() / manifest.name
    if target.exists():
        raise InvalidRequestError(f"{target} exists", fix="pick an empty directory")
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for entry in manifest.files:
            out = staging / entry.path
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(store.blob(entry), out)
        (staging / EXPORT_MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1))
        os.replace(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-written is left looking like an export
        raise InvalidRequestError(f"cannot export to {target.parent}: {exc.strerror}",
                                  fix="pick a writable directory with room for the model") from None
    return target
