"""Make an engine process die with the process that started it, even on SIGKILL.

On Linux the kernel delivers SIGKILL to the child when its parent dies
(``PR_SET_PDEATHSIG``); elsewhere a watchdog thread polls the parent pid. Run as
``python -m seekstack.engines.lifeline PARENT_PID -- CMD ARGS…`` it arms the
lifeline and then ``exec``s an external engine (vLLM, SGLang), which keeps it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:  # pragma: no cover - non-Linux fallback
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    # The parent may have died before the lifeline was armed.
    if os.getppid() != parent_pid:
        os._exit(1)


def main(argv: list[str]) -> None:
    parent_pid, sep, *cmd = argv
    if sep != "--" or not cmd:
        raise SystemExit("usage: python -m seekstack.engines.lifeline PARENT_PID -- CMD [ARGS…]")
    die_with_parent(int(parent_pid))
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
