"""A real load balancer (Debian's HAProxy) in front of several gateways, for the fleet tests.

It health-checks each gateway's ``/readyz`` every 200 ms and retries a request that found a
gateway gone (refused, reset, closed without an answer) on another one, as a production
balancer in front of seekstack gateways is set up (docs/operations.md shows the same lines).
When no gateway is ready, its own 503 is an OpenAI error too (:data:`NONE_READY`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

CONFIG = """global
    maxconn 1024
    log stdout format raw local0
defaults
    mode http
    log global
    option httplog
    option http-buffer-request
    timeout connect 1s
    timeout client 120s
    timeout server 120s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response junk-response response-timeout
    errorfile 503 {errors}/503.http
frontend gateways
    bind 127.0.0.1:{port}
    default_backend gateways
backend gateways
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 1 rise 2
{servers}
"""


# The balancer's own answer when no gateway is ready: what a client of seekstack expects (the
# OpenAI error shape, a code, Retry-After), not HAProxy's HTML page.
NONE_READY = (
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Content-Type: application/json\r\n"
    "Cache-Control: no-cache\r\n"
    "Retry-After: 2\r\n"
    "Connection: close\r\n"
    "\r\n"
    '{"error": {"message": "no seekstack gateway is ready to serve (each gateway\'s /readyz says why); retry shortly",'
    ' "type": "server_error", "param": null, "code": "gateway_unavailable"}}\n'
)


class HAProxy:
    def __init__(self, tmp: Path, backends: dict[str, int]):
        haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
        if haproxy is None:
            raise RuntimeError("haproxy is not installed: the README's test command installs it (apt-get install haproxy)")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        servers = "\n".join(f"    server {name} 127.0.0.1:{port} check" for name, port in backends.items())
        self.config = tmp / "haproxy.cfg"
        (tmp / "503.http").write_text(NONE_READY)
        self.config.write_text(CONFIG.format(port=self.port, servers=servers, errors=tmp))
        self.log = open(tmp / "haproxy.log", "wb")
        self.proc = subprocess.Popen([haproxy, "-db", "-f", str(self.config)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {(tmp / 'haproxy.log').read_text()}")
            time.sleep(0.05)
        raise RuntimeError("haproxy did not start listening")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
