"""Work the event loop must not wait for: a database call, a render, a hash — run in a worker
thread; a long walk in Python — run in a process of its own, where it holds no interpreter lock
the event loop needs."""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import anyio

_worker: ProcessPoolExecutor | None = None  # in_worker_process's: started on first use


async def off_loop(call, *args, **kwargs):
    """``call(*args, **kwargs)`` in a worker thread; the loop goes on serving meanwhile."""
    return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))


async def in_process(module: str, *args: str) -> tuple[int, bytes]:
    """``python -m module args…`` in a process of its own: its exit status and what it printed.
    Cancelled (the caller left), it is killed."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, *args, stdout=asyncio.subprocess.PIPE,
                                                stdin=asyncio.subprocess.DEVNULL)
    try:
        output, _ = await proc.communicate()
    except asyncio.CancelledError:
        proc.kill()
        raise
    return proc.returncode, output


async def in_worker_process(call, *args):
    """``call(*args)`` in a long-lived worker process, started (spawned) on first use: for work
    on a large input that would hold the interpreter lock for long (a regular expression over a
    long prompt runs in C and never lets go of it). ``call`` and its arguments are pickled. A
    worker that died is replaced at the next call; this one raises BrokenProcessPool."""
    global _worker
    if _worker is None:
        _worker = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_leave_with, initargs=(os.getpid(),))
    try:
        return await asyncio.get_running_loop().run_in_executor(_worker, call, *args)
    except BrokenProcessPool:
        _worker = None
        raise


def stop_worker_process() -> None:
    """At shutdown: the worker process leaves (a call still running in it is abandoned)."""
    global _worker
    if _worker is not None:
        _worker.shutdown(wait=False, cancel_futures=True)
        _worker = None


def _leave_with(parent: int) -> None:
    """In the worker process: exit once the process that started it is gone — killed outright, it
    could not say so, and the worker would otherwise wait for work forever."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="leave-with-parent", daemon=True).start()
