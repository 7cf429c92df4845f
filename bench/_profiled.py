"""Run a seekstack command under cProfile, writing the stats when it ends (SIGTERM included).

    python bench/_profiled.py OUT.prof serve --config F --port P
"""

from __future__ import annotations

import cProfile
import signal
import sys


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    profiler = cProfile.Profile()
    from seekstack.cli import main as seekstack

    def dump(*_):
        profiler.disable()
        profiler.dump_stats(out)

    profiler.enable()
    try:
        seekstack(argv)
    except SystemExit:
        pass
    finally:
        dump()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # serve drains on Ctrl-C: the same path
    main()
