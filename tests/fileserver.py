"""A loopback HTTP file server for download tests: Range requests, Hugging-Face- and ModelScope-like
APIs, and fault injection (drop the connection after N bytes, corrupt a byte, go slowly, ignore
Range, claim a huge size); and a forward proxy that records what passes through it."""

from __future__ import annotations

import hashlib
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class Faults:
    drop_after: int | None = None     # close the connection after this many body bytes …
    drops: int = 0                    # … this many times
    corrupt_at: int | None = None     # flip the byte at this offset in what is sent
    delay: float = 0.0                # seconds between 64 KiB chunks
    ignore_range: bool = False
    claimed_length: int | None = None  # HEAD answers with this Content-Length (a huge file)


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)            # URL path → content
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)  # "org/repo" → {file: content}
    faults: dict[str, Faults] = field(default_factory=dict)          # URL path → faults
    log: list[dict] = field(default_factory=list)                    # one entry per GET: path, range, bytes sent

    def __post_init__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            def _serve(self, head: bool):
                url = urlsplit(self.path)
                path = unquote(url.path)
                if path.startswith("/api/models/"):
                    return self._api(path)
                if path.startswith("/api/v1/models/"):
                    return self._modelscope(path, dict(p.split("=", 1) for p in url.query.split("&") if "=" in p), head)
                content = server.content(path)
                if content is None:
                    self.send_response(404)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    if not head:
                        self.wfile.write(b"{}")
                    return
                faults = server.faults.get(path, Faults())
                start, end = 0, len(content) - 1
                rng = self.headers.get("range")
                if rng and not faults.ignore_range:
                    first, _, last = rng.removeprefix("bytes=").partition("-")
                    start, end = int(first), min(int(last), end) if last else end
                    if start >= len(content):
                        self.send_response(416)
                        self.send_header("content-length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("content-range", f"bytes {start}-{end}/{len(content)}")
                else:
                    self.send_response(200)
                body = bytearray(content[start:end + 1])
                if faults.corrupt_at is not None and faults.corrupt_at >= start:
                    body[faults.corrupt_at - start] ^= 0xFF
                self.send_header("content-length", str(faults.claimed_length if head and faults.claimed_length else len(body)))
                self.send_header("etag", '"' + hashlib.sha256(content).hexdigest()[:20] + '"')
                self.send_header("accept-ranges", "bytes")
                self.end_headers()
                if head:
                    return
                entry = {"path": path, "range": rng, "sent": 0}
                server.log.append(entry)
                limit = len(body)
                if faults.drop_after is not None and faults.drops > 0:
                    faults.drops -= 1
                    limit = min(limit, faults.drop_after)
                for i in range(0, limit, 65536):
                    piece = bytes(body[i:min(i + 65536, limit)])
                    try:
                        self.wfile.write(piece)
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    entry["sent"] += len(piece)
                    if faults.delay:
                        time.sleep(faults.delay)
                if limit < len(body):
                    self.close_connection = True
                    self.connection.shutdown(2)

            def _modelscope(self, path, query, head):
                # /api/v1/models/{org}/{repo}/repo/files?Revision=…  → the listing
                # /api/v1/models/{org}/{repo}/repo?Revision=…&FilePath=…  → one file
                import json

                parts = path.split("/")
                repo = "/".join(parts[4:6])
                files = server.repos.get(repo, {})
                commit = hashlib.sha1(repo.encode()).hexdigest()
                if path.endswith("/repo/files"):
                    body = json.dumps({"Code": 200, "Data": {"Files": [
                        {"Name": n.split("/")[-1], "Path": n, "Type": "blob", "Size": len(d), "Revision": commit,
                         "Sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()]}}).encode()
                    status = 200 if repo in server.repos else 404
                else:
                    data = files.get(unquote(query.get("FilePath", "")))
                    body, status = (data, 200) if data is not None else (b"{}", 404)
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)
                    server.log.append({"path": path, "range": None, "sent": len(body)})

            def _api(self, path):
                # /api/models/{org}/{repo}/revision/{rev}
                parts = path.split("/")
                repo = "/".join(parts[3:5])
                files = server.repos.get(repo)
                if files is None:
                    body = b'{"error": "Repository not found"}'
                    self.send_response(404)
                else:
                    import json

                    commit = hashlib.sha1(repo.encode()).hexdigest()
                    body = json.dumps({"sha": commit, "siblings": [
                        {"rfilename": name, "lfs": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}}
                        for name, data in files.items()]}).encode()
                    self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def content(self, path: str) -> bytes | None:
        if path in self.files:
            return self.files[path]
        for repo, files in self.repos.items():  # /{org}/{repo}/resolve/{commit}/{file}
            prefix = f"/{repo}/resolve/"
            if path.startswith(prefix):
                name = path[len(prefix):].split("/", 1)[1]
                return files.get(name)
        return None

    def close(self):
        self.httpd.shutdown()


class ForwardProxy:
    """A plain HTTP forward proxy on loopback that records what passed through it."""

    def __init__(self):
        self.seen: list[str] = []
        seen = self.seen
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _relay(self, method):
                seen.append(f"{method} {self.path}")
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("range", "authorization", "user-agent")}
                request = urllib.request.Request(self.path, headers=headers, method=method)
                try:
                    response = direct.open(request)
                    status, body, reply = response.status, response.read(), response.headers
                except urllib.error.HTTPError as exc:
                    status, body, reply = exc.code, exc.read(), exc.headers
                self.send_response(status)
                for name in ("content-type", "etag", "accept-ranges", "content-range"):
                    if reply.get(name):
                        self.send_header(name, reply[name])
                self.send_header("content-length", reply.get("content-length", str(len(body))) if method == "HEAD" else str(len(body)))
                self.end_headers()
                if method != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                self._relay("GET")

            def do_HEAD(self):
                self._relay("HEAD")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
