"""Model store commands: pull, import, export, rm, gc, sign, keygen, verify, models history/rollback/catalog."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn)
from rich.table import Table

from ..config import load_settings
from ..errors import InvalidRequestError
from ..store import open_store, verify as verify_model
from ..store.pull import PullOptions, pull as pull_source
from ..store.signing import keygen as make_keys, load_key, sign as sign_manifest
from ..store.transfer import export_model, import_path
from .common import ConfigOption, JsonOption, console

out = console()


class BarProgress:
    """Bytes, speed and ETA per file, and in total."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}
        self.total = progress.add_task("total", total=None)

    def start(self, name: str, total: int | None, done: int) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, completed=done)
            known = [self.progress.tasks[t].total for t in self.tasks.values()]
            if all(k is not None for k in known):
                self.progress.update(self.total, total=sum(known))
        else:
            self.progress.update(self.tasks[name], total=total, completed=done)
        self.progress.update(self.total, completed=sum(self.progress.tasks[t].completed for t in self.tasks.values()))

    def advance(self, name: str, n: int) -> None:
        self.progress.update(self.tasks[name], advance=n)
        self.progress.update(self.total, advance=n)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=out)


def _print_manifest(manifest, verb: str) -> None:
    if manifest.unchanged:
        out.print(f"[green]unchanged[/] (same as {manifest.name}@{manifest.version}): no new version")
        return
    out.print(f"[green]{verb}[/] {manifest.name}@{manifest.version}: {len(manifest.files)} file(s), "
              f"{manifest.size / 1e9:.3f} GB, {manifest.format}" + (f", revision {manifest.revision}" if manifest.revision else ""))


def pull(
    source: str = typer.Argument(..., help="https://URL, hf:ORG/REPO[@REV][:GLOB], modelscope:ORG/REPO[@REV][:GLOB], a catalog NAME:QUANT, or a local path."),
    name: Optional[str] = typer.Option(None, "--name", help="Store name (default: from the source)."),
    token: Optional[str] = typer.Option(None, "--token", help="Bearer token for gated repositories (default: $HF_TOKEN)."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickle weights (they can run code when loaded)."),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="Expected sha256 of a single-file download."),
    connections: int = typer.Option(4, "--connections", min=1, max=16, help="Parallel ranges for files of 256 MiB or more."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Download a model into the store: resumable, retried, hashed and checked before it is usable."""
    settings = load_settings(config)
    options = PullOptions(hf_endpoint=settings.store.hf_endpoint, modelscope_endpoint=settings.store.modelscope_endpoint, allow_pickle=allow_pickle or settings.store.allow_pickle,
                          token=token or os.environ.get("HF_TOKEN"), connections=connections)
    with _progress() as progress:
        manifest = pull_source(open_store(settings), source, name, options, BarProgress(progress), sha256=sha256)
    _print_manifest(manifest, "pulled")


def import_(
    path: Path = typer.Argument(..., help="A model file or folder (a folder written by `seekstack export` keeps its signatures)."),
    name: Optional[str] = typer.Option(None, "--name", help="Store name (default: the file or folder name)."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickle weights (they can run code when loaded)."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Bring a model in from local disk (air-gapped sites): hashed, validated, versioned."""
    settings = load_settings(config)
    manifest = import_path(open_store(settings), path, name, allow_pickle=allow_pickle or settings.store.allow_pickle)
    _print_manifest(manifest, "imported")
    if manifest.signatures:
        out.print(f"signatures kept: {', '.join(s['key_id'] for s in manifest.signatures)} — check them with `seekstack verify`")


def export(
    name: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    directory: Path = typer.Argument(..., help="Where to write NAME/ (files + seekstack-manifest.json)."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Write a model, its manifest and signatures to a folder for carrying to another site."""
    store = open_store(load_settings(config))
    target = export_model(store, store.manifest(name), directory)
    out.print(f"[green]exported[/] to {target}; at the other site: `seekstack import {target}`")


def rm(
    name: str = typer.Argument(..., help="NAME (every version) or NAME@VERSION."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Remove a model version (or all of them); `seekstack gc` then frees the disk."""
    store = open_store(load_settings(config))
    manifest = store.manifest(name)  # fails clearly when it does not exist
    what = name if "@" in name else f"every version of {manifest.name}"
    if not yes and not typer.confirm(f"remove {what}?"):
        raise typer.Exit(1)
    gone = store.remove(name)
    out.print(f"[green]removed[/] {manifest.name} version(s) {', '.join(map(str, gone))}; run `seekstack gc` to free the disk")


def gc(config: Optional[Path] = ConfigOption) -> None:
    """Delete blobs no model version references (and leftovers of interrupted imports)."""
    count, freed = open_store(load_settings(config)).gc()
    out.print(f"[green]freed[/] {freed / 1e9:.3f} GB in {count} file(s)")


def sign(
    name: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    key: Path = typer.Option(..., "--key", help="Private key: Ed25519 .key from `seekstack keygen`, or an HMAC key file."),
    config: Optional[Path] = ConfigOption,
) -> None:
    """Sign a model's manifest (after a full re-hash, so only intact files get signed)."""
    store = open_store(load_settings(config))
    manifest = store.manifest(name)
    verdict = verify_model(store, manifest, full=True)
    if not verdict.ok:
        raise InvalidRequestError(f"will not sign {manifest.name}@{manifest.version}: " + "; ".join(verdict.problems),
                                  fix="re-pull or re-import the model first")
    entry = sign_manifest(manifest, load_key(key))
    store.save_signatures(manifest)
    out.print(f"[green]signed[/] {manifest.name}@{manifest.version} ({entry['alg']}, key {entry['key_id']})")


def keygen(
    prefix: Path = typer.Argument(..., help="Writes PREFIX.key (private, 0600) and PREFIX.pub."),
    hmac: bool = typer.Option(False, "--hmac", help="A shared HMAC-SHA256 secret instead of an Ed25519 key pair."),
) -> None:
    """Create a signing key: Ed25519 (PREFIX.key + PREFIX.pub) or an HMAC secret (PREFIX.key)."""
    private, public = make_keys(prefix, "hmac" if hmac else "ed25519")
    out.print(f"[green]wrote[/] {private} (mode 0600)" + (f" and {public}: put the .pub in store.trusted_keys" if public else ""))


def verify(
    name: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    key: list[Path] = typer.Option([], "--key", help="Trusted public key(s) (default: store.trusted_keys)."),
    config: Optional[Path] = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Re-hash every file and check the signatures; name each bad file."""
    settings = load_settings(config)
    store = open_store(settings)
    manifest = store.manifest(name)
    keys = key or settings.store.trusted_keys
    verdict = verify_model(store, manifest, full=True, trusted_keys=keys, require_signature=bool(keys) or settings.store.require_signature)
    if as_json:
        print(json.dumps({"model": f"{manifest.name}@{manifest.version}", "ok": verdict.ok, "problems": verdict.problems,
                          "signed_by": verdict.signed_by}, indent=1))
    elif verdict.ok:
        found = ", ".join(f"{s.get('key_id', '?')} ({s.get('alg', '?')})" for s in manifest.signatures)
        signed = (f", signature by {verdict.signed_by} valid and trusted" if verdict.signed_by else
                  f", signed by {found} — not checked: no trusted key (pass --key PUB, or set store.trusted_keys)"
                  if found else ", not signed")
        out.print(f"[green]ok[/] {manifest.name}@{manifest.version}: {len(manifest.files)} file(s) re-hashed{signed}")
    else:
        for problem in verdict.problems:
            out.print(f"[bold red]bad[/] {problem}", soft_wrap=True)
    if not verdict.ok:
        raise typer.Exit(2)


def history(name: str = typer.Argument(..., help="Model name."), config: Optional[Path] = ConfigOption,
            as_json: bool = JsonOption) -> None:
    """Every version of a model, which one is current, and where each came from."""
    store = open_store(load_settings(config))
    first = store.manifest(name)
    current = store.current(first.name)
    rows = [store.manifest(f"{first.name}@{v}") for v in store.versions(first.name)]
    if as_json:
        print(json.dumps([{**m.to_json(), "current": m.version == current} for m in rows], indent=1))
        return
    table = Table(title=f"{first.name}")
    for column in ("version", "current", "files", "GB", "source", "revision", "signed"):
        table.add_column(column)
    for m in rows:
        table.add_row(str(m.version), "*" if m.version == current else "", str(len(m.files)), f"{m.size / 1e9:.3f}",
                      m.source, m.revision or "-", ", ".join(s["key_id"] for s in m.signatures) or "-")
    out.print(table)


def rollback(name: str = typer.Argument(..., help="Model name."),
             version: Optional[int] = typer.Argument(None, help="Version to make current (default: the one before)."),
             config: Optional[Path] = ConfigOption) -> None:
    """Make an earlier version current; restart `serve` (or its replicas) to serve it."""
    store = open_store(load_settings(config))
    chosen = store.rollback(name, version)
    out.print(f"[green]{name} now serves version {chosen}[/] after a restart of `seekstack serve`")
