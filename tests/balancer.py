"""Real load balancers in front of several gateways, for the fleet tests.

:class:`HAProxy` (Debian's) health-checks each gateway's ``/readyz`` every 200 ms and retries
a request that found a gateway gone (refused, reset, closed without an answer) on another
one, as a production balancer in front of seekstack gateways is set up (docs/operations.md
shows the same lines). When no gateway is ready, its own 503 is an OpenAI error too
(:data:`NONE_READY`).

:class:`Nginx` (Debian's, open source) has no active health checks, and by default does not
send a POST that reached a gateway to another one: :data:`NGINX_LOCATION` — the lines the
operations guide shows — tells it to, and to try another gateway on a 502 or 503.
"""

from __future__ import annotations

import os
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
        _wait_listening(self.proc, self.port, tmp / "haproxy.log")

    def stop(self) -> None:
        _stop(self.proc)
        self.log.close()


# The proxy lines for seekstack gateways behind open-source nginx (docs/operations.md shows them):
# a POST that found its gateway gone (error, timeout) or not ready (502, 503) is sent to the next;
# streams pass through unbuffered.
NGINX_LOCATION = """\
        location / {
            proxy_pass http://seekstack;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_buffering off;
            proxy_read_timeout 300s;
        }
"""

NGINX_CONFIG = """{user}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    upstream seekstack {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
{location}    }}
}}
"""


class Nginx:
    def __init__(self, tmp: Path, backends: dict[str, int]):
        nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
        if nginx is None:
            raise RuntimeError("nginx is not installed: the README's test command installs it (apt-get install nginx)")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;" for port in backends.values())
        self.config = tmp / "nginx.conf"
        self.config.write_text(NGINX_CONFIG.format(user="user root;\n" if os.geteuid() == 0 else "", tmp=tmp,
                                                   servers=servers, port=self.port, location=NGINX_LOCATION))
        self.log = open(tmp / "nginx.log", "wb")
        self.proc = subprocess.Popen([nginx, "-c", str(self.config), "-p", str(tmp)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        _wait_listening(self.proc, self.port, tmp / "nginx-error.log")

    def stop(self) -> None:
        _stop(self.proc)
        self.log.close()


def _wait_listening(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"the balancer exited: {log.read_text() if log.exists() else ''}")
        time.sleep(0.05)
    raise RuntimeError("the balancer did not start listening")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
