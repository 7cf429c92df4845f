"""``seekstack pull``: download into the store — resumable, retried, verified, never half-done.

Sources:
- ``https://…/file.gguf`` (or http:// to a loopback mirror): one file; its ETag is the revision;
- ``hf:ORG/REPO[@REVISION][:GLOB]``: the Hugging Face hub (or a mirror, ``store.hf_endpoint``);
  the revision is resolved to a commit hash first and pinned, then the matching files are fetched;
- ``modelscope:ORG/REPO[@REVISION][:GLOB]``: ModelScope (``store.modelscope_endpoint``), for
  mainland sites; files are listed with their sha256 and fetched by path at the listed commit;
- ``NAME:QUANT`` (``deepseek-r1-distill-qwen:7b-q4_k_m``): a release from the catalog;
- a local path: the same as ``seekstack import``.

Each file downloads to ``tmp/<key>.part``. A broken connection is retried with exponential
backoff, asking only for the missing bytes (HTTP Range); a server that ignores Range restarts
the file. A large file (≥ 256 MiB) from a server that accepts ranges comes over several
connections at once, each range resumable on its own. The file is hashed and its format checked before it becomes a blob, and the manifest
is written only when every file is in: an interrupted pull leaves nothing that looks usable.
Proxies come from the environment (HTTPS_PROXY, NO_PROXY), which both httpx (the small API
calls) and urllib (file bodies) read.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import queue
import shutil
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlsplit

import httpx

from ..errors import InvalidRequestError, ServerUnreachableError
from .safety import check_file, model_format, refuse_pickle
from .store import FileEntry, Manifest, Store, model_name, safe_relpath
from .transfer import import_path
from .verify import record_verified

CHUNK = 1 << 20


class Progress(Protocol):
    def start(self, name: str, total: int | None, done: int) -> None: ...
    def advance(self, name: str, n: int) -> None: ...


class _Quiet:
    def start(self, name, total, done):
        pass

    def advance(self, name, n):
        pass


@dataclass
class PullOptions:
    hf_endpoint: str = "https://huggingface.co"
    modelscope_endpoint: str = "https://modelscope.cn"
    retries: int = 5
    backoff: float = 0.5          # seconds, doubled per retry
    timeout: float = 30.0         # per read
    allow_pickle: bool = False
    token: str | None = None      # bearer token for gated repositories
    connections: int = 4          # parallel ranges for a large file, when the server accepts ranges
    parallel_min: int = 256 * 2**20


@dataclass
class Remote:
    relpath: str
    url: str
    size: int | None = None
    sha256: str | None = None     # published by the source (the hub's LFS pointer, or --sha256)
    ranges: bool = False          # the server said Accept-Ranges: bytes


def plan_source(source: str, options: PullOptions, client: httpx.Client) -> tuple[list[Remote], str | None, str]:
    """(files to fetch, pinned revision, default name) for a source."""
    if source.startswith("hf:"):
        return _hf_files(source[3:], options, client)
    if source.startswith("modelscope:"):
        return _modelscope_files(source[len("modelscope:"):], options, client)
    if source.startswith(("https://", "http://")):
        parts = urlsplit(source)
        name = Path(parts.path).name
        if not name:
            raise InvalidRequestError(f"{source} does not name a file", fix="give the URL of the model file")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise InvalidRequestError("plain http is only accepted from this machine", fix="use https://")
        return [Remote(safe_relpath(name), source)], None, Path(name).stem
    if "://" in source:  # a URL, but not one we fetch (ftp://, s3://, file:// …)
        raise InvalidRequestError(f"cannot pull {source!r}: {source.partition('://')[0]}:// is not supported",
                                  fix="use https://URL, hf:ORG/REPO[@REV][:GLOB], modelscope:ORG/REPO, a catalog "
                                      "NAME:QUANT, or `seekstack import PATH` for a file already here")
    if ":" in source and not source.startswith(("/", ".")):
        from ..planner.catalog import catalog_source

        hub_source, name = catalog_source(source)
        remotes, revision, _ = plan_source(hub_source, options, client)
        return remotes, revision, name
    raise InvalidRequestError(f"cannot pull {source!r}",
                              fix="use https://URL, hf:ORG/REPO[@REV][:GLOB], a catalog NAME:QUANT, or a local path")


def _split_spec(spec: str, scheme: str) -> tuple[str, str | None, str]:
    repo, _, glob = spec.partition(":")
    repo, _, revision = repo.partition("@")
    if repo.count("/") != 1:
        raise InvalidRequestError(f"{scheme}:{spec}: expected {scheme}:ORG/REPO[@REVISION][:GLOB]",
                                  fix=f"e.g. {scheme}:deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")
    return repo, revision or None, glob


def _modelscope_files(spec: str, options: PullOptions, client: httpx.Client) -> tuple[list[Remote], str, str]:
    """ModelScope (modelscope.cn): list the files of a revision with their sha256, fetch each by path.

    The revision (default ``master``) is pinned to the commit the listing reports."""
    repo, revision, glob = _split_spec(spec, "modelscope")
    endpoint = options.modelscope_endpoint.rstrip("/")
    rev = quote(revision or "master", safe="")
    info = _get_json(client, f"{endpoint}/api/v1/models/{repo}/repo/files?Revision={rev}&Recursive=true", f"modelscope:{repo}")
    entries = [f for f in ((info.get("Data") or {}).get("Files") or []) if isinstance(f, dict) and f.get("Type") == "blob"]
    chosen = [f for f in entries if isinstance(f.get("Path"), str) and (not glob or fnmatch.fnmatch(f["Path"], glob))]
    if not chosen:
        raise InvalidRequestError(f"modelscope:{repo}@{revision or 'master'} has no files matching {glob or '*'}",
                                  fix="check the repository, revision and file glob")
    commit = chosen[0].get("Revision") or revision or "master"
    return ([Remote(safe_relpath(f["Path"]),
                    f"{endpoint}/api/v1/models/{repo}/repo?Revision={quote(commit, safe='')}&FilePath={quote(f['Path'])}",
                    size=f.get("Size"), sha256=f.get("Sha256")) for f in chosen], commit, repo.split("/")[1])


def _hf_files(spec: str, options: PullOptions, client: httpx.Client) -> tuple[list[Remote], str, str]:
    repo, revision, glob = _split_spec(spec, "hf")
    endpoint = options.hf_endpoint.rstrip("/")
    url = f"{endpoint}/api/models/{repo}/revision/{quote(revision or 'main', safe='')}?blobs=true"
    info = _get_json(client, url, f"hf:{repo}")
    commit = info.get("sha")
    siblings = [s for s in info.get("siblings", []) if isinstance(s, dict) and isinstance(s.get("rfilename"), str)]
    chosen = [s for s in siblings if not glob or fnmatch.fnmatch(s["rfilename"], glob)]
    if not commit or not chosen:
        raise InvalidRequestError(f"hf:{repo}@{revision or 'main'} has no files matching {glob or '*'}",
                                  fix="check the repository, revision and file glob")
    return ([Remote(safe_relpath(s["rfilename"]), f"{endpoint}/{repo}/resolve/{commit}/{quote(s['rfilename'])}",
                    size=(s.get("lfs") or {}).get("size"), sha256=(s.get("lfs") or {}).get("sha256"))
             for s in chosen], commit, repo.split("/")[1])


def _get_json(client: httpx.Client, url: str, what: str) -> dict:
    try:
        r = client.get(url)
    except httpx.TransportError as exc:
        raise ServerUnreachableError(f"cannot reach {what}: {exc}", fix="check the network, proxy, or store.hf_endpoint") from None
    if r.status_code in (401, 403):
        raise InvalidRequestError(f"{what} refused access (HTTP {r.status_code})", fix="pass --token for a gated repository")
    if r.status_code == 404:
        raise InvalidRequestError(f"{what} was not found (HTTP 404)", fix="check the repository name and revision")
    if r.status_code != 200:
        raise ServerUnreachableError(f"{what} answered HTTP {r.status_code}", fix="retry later")
    return r.json()


class _Hasher:
    """SHA-256 on a thread of its own: hashlib releases the GIL on large blocks, so hashing runs
    beside the network reads and file writes instead of after them."""

    def __init__(self):
        self.digest = hashlib.sha256()
        self._blocks: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while (block := self._blocks.get()) is not None:
            self.digest.update(block)

    def feed(self, block: bytes) -> None:
        self._blocks.put(block)

    def hexdigest(self) -> str:
        self._blocks.put(None)
        self._thread.join()
        return self.digest.hexdigest()


def _open(remote: Remote, headers: dict[str, str], options: PullOptions):
    """Send a GET; the response, or None for 416 (nothing left to fetch). 404/401/403 are final."""
    headers = {"User-Agent": "seekstack", **headers}
    if options.token:
        headers["Authorization"] = f"Bearer {options.token}"
    try:
        return urllib.request.build_opener().open(urllib.request.Request(remote.url, headers=headers), timeout=options.timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416:
            return None
        if exc.code == 404:
            raise InvalidRequestError(f"{remote.relpath}: not found at {remote.url} (HTTP 404)", fix="check the source") from None
        if exc.code in (401, 403):
            raise InvalidRequestError(f"{remote.relpath}: access refused (HTTP {exc.code})", fix="pass --token") from None
        raise OSError(f"HTTP {exc.code}") from None


def _retrying(remote: Remote, target: Path, options: PullOptions, attempt_once):
    """Run ``attempt_once`` until it succeeds; network errors are retried with backoff."""
    attempt = 0
    while True:
        try:
            return attempt_once()
        except (OSError, http.client.HTTPException) as exc:  # URLError, resets, timeouts, IncompleteRead
            attempt += 1
            if attempt > options.retries:
                raise ServerUnreachableError(f"{remote.relpath}: download failed after {options.retries} retries ({exc}); "
                                             f"{target.stat().st_size if target.exists() else 0} bytes kept",
                                             fix="run the same pull again: it resumes where it stopped") from None
            time.sleep(options.backoff * 2 ** (attempt - 1))


def download(remote: Remote, part: Path, options: PullOptions, progress: Progress) -> tuple[str | None, str]:
    """Fetch ``remote`` into ``part`` over one connection, resuming; return (ETag or None, sha256 of
    the whole file — hashed as it arrives, so there is no second pass over it).

    The body is read with urllib in blocks of up to 1 MiB (it follows redirects and honours the
    proxy environment); a dropped connection is retried asking only for the missing bytes."""
    etag: str | None = None

    def once():
        nonlocal etag
        have = part.stat().st_size if part.exists() else 0
        hasher = _Hasher()
        try:
            if have:  # what an earlier attempt kept
                with open(part, "rb") as f:
                    while block := f.read(CHUNK):
                        hasher.feed(block)
            response = _open(remote, {"Range": f"bytes={have}-"} if have else {}, options)
            if response is None:  # 416: already complete
                return etag, hasher.hexdigest()
            with response:
                etag = response.headers.get("etag", etag)
                if response.status == 200 and have:  # the server ignored Range: start over
                    part.unlink()
                    hasher.hexdigest()
                    have, hasher = 0, _Hasher()
                length = response.headers.get("content-length")
                total = have + int(length) if length is not None else None
                remote.size = total
                progress.start(remote.relpath, total, have)
                with open(part, "ab") as f:
                    while block := response.read1(CHUNK):  # what has arrived, up to 1 MiB: progress keeps moving
                        f.write(block)
                        hasher.feed(block)
                        progress.advance(remote.relpath, len(block))
            if total is not None and part.stat().st_size < total:
                raise OSError("the connection closed before the end of the file")
            return etag, hasher.hexdigest()
        except BaseException:
            hasher.hexdigest()  # stop its thread
            raise

    return _retrying(remote, part, options, once)


def download_parallel(remote: Remote, part: Path, options: PullOptions, progress: Progress) -> str:
    """Fetch a large file as ``options.connections`` byte ranges at once (each resumable), then join
    them into ``part`` while hashing; return the sha256."""
    size, n = remote.size or 0, options.connections
    bounds = [(i * size // n, (i + 1) * size // n - 1) for i in range(n)]
    segments = [part.with_name(f"{part.stem}.{i}.part") for i in range(n)]  # .part: gc keeps them for resuming
    progress.start(remote.relpath, size, sum(s.stat().st_size for s in segments if s.exists()))

    def fetch(segment: Path, first: int, last: int) -> None:
        def once():
            have = segment.stat().st_size if segment.exists() else 0
            if first + have > last:
                return
            response = _open(remote, {"Range": f"bytes={first + have}-{last}"}, options)
            if response is None:
                return
            with response:
                if response.status != 206:
                    raise InvalidRequestError(f"{remote.relpath}: the server ignored a Range request",
                                              fix="pull again; it will use one connection")
                left = last - first + 1 - have
                with open(segment, "ab") as f:
                    while left > 0 and (block := response.read1(min(CHUNK, left))):  # never past the range
                        f.write(block)
                        left -= len(block)
                        progress.advance(remote.relpath, len(block))
            if segment.stat().st_size < last - first + 1:
                raise OSError("the connection closed before the end of the range")

        _retrying(remote, segment, options, once)

    with ThreadPoolExecutor(max_workers=n) as pool:
        for future in [pool.submit(fetch, seg, a, b) for seg, (a, b) in zip(segments, bounds)]:
            future.result()
    hasher = _Hasher()
    with open(part, "wb") as out:
        for segment in segments:
            with open(segment, "rb") as f:
                while block := f.read(CHUNK):
                    out.write(block)
                    hasher.feed(block)
    for segment in segments:
        segment.unlink()
    return hasher.hexdigest()


def pull(store: Store, source: str, name: str | None = None, options: PullOptions | None = None,
         progress: Progress | None = None, sha256: str | None = None) -> Manifest:
    options = options or PullOptions()
    progress = progress or _Quiet()
    local = Path(source).expanduser()
    if not source.startswith(("hf:", "https://", "http://")) and local.exists():
        return import_path(store, local, name, allow_pickle=options.allow_pickle, sha256=sha256)
    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
    timeout = httpx.Timeout(options.timeout, connect=10.0)
    with httpx.Client(follow_redirects=True, timeout=timeout, headers=headers, trust_env=True) as client:
        remotes, revision, default_name = plan_source(source, options, client)
        if sha256 is not None:
            if len(remotes) != 1:
                raise InvalidRequestError("--sha256 applies to a single file", fix="pull one file, or let the hub supply hashes")
            remotes[0].sha256 = sha256.lower()
        for remote in remotes:  # refuse pickle before downloading gigabytes of it
            refuse_pickle(remote.relpath, options.allow_pickle)
        _check_disk(client, store, remotes)
        entries, formats, etags, license = [], [], [], None
        for remote in remotes:
            key = hashlib.sha256(remote.url.encode()).hexdigest()[:24]
            part = store.tmp_dir() / f"{key}.part"
            if (options.connections > 1 and remote.ranges and (remote.size or 0) >= options.parallel_min
                    and not part.exists()):
                etag, digest = None, download_parallel(remote, part, options, progress)
            else:
                etag, digest = download(remote, part, options, progress)
            etags.append(etag)
            if remote.sha256 is not None and digest != remote.sha256:
                part.unlink()  # corrupt: never keep it, never resume from it
                raise InvalidRequestError(f"{remote.relpath}: the downloaded bytes are corrupt (sha256 {digest[:16]}… "
                                          f"but the source publishes {remote.sha256[:16]}…)", fix="pull again; "
                                          "if it repeats, the mirror or a proxy is altering the file")
            checked = check_file(part, remote.relpath, allow_pickle=options.allow_pickle)
            formats.append(checked.format)
            license = license or checked.license
            entries.append(FileEntry(remote.relpath, part.stat().st_size, digest))
            store.add_blob(part, digest, move=True)
    revision = revision or (etags[0].strip('"') if len(etags) == 1 and etags[0] else None)
    manifest = store.commit(model_name(name or default_name), entries, format=model_format(formats), source=source,
                            revision=revision, license=license)
    record_verified(store, manifest)
    return manifest


def _check_disk(client: httpx.Client, store: Store, remotes: list[Remote]) -> None:
    """Ask for each file's size (HEAD) and refuse when the store's disk cannot hold them."""
    total = 0
    for remote in remotes:
        try:
            r = client.head(remote.url)
            if r.status_code == 200 and r.headers.get("content-length"):
                remote.size = int(r.headers["content-length"])
                remote.ranges = r.headers.get("accept-ranges", "").lower() == "bytes"
                total += remote.size
        except httpx.TransportError:
            pass  # the download itself will report it
    free = shutil.disk_usage(store.tmp_dir()).free
    if total > free:
        raise InvalidRequestError(f"the pull needs {total / 1e9:.2f} GB but the store has {free / 1e9:.2f} GB free",
                                  fix="free disk space, or set store.path to a larger disk")
