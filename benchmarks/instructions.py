"""User-space instructions per sequential round trip, counted by callgrind: the latency benchmark's
deterministic companion.

Latency and CPU time on a shared VM move by tens of percent from one moment to the next (idle wake-ups,
the neighbours); the instructions a server executes for the same round trips do not.  Each server runs
under ``valgrind --tool=callgrind`` with counting off; after warm-up round trips, counting is switched on
(``callgrind_control -i on``) for ``round_trips`` more and the profile is dumped (``-d``): its total over
``round_trips`` is what one round trip costs in user space (the interpreter, the libraries, libc's system
call wrappers; the kernel's side of the system calls is not counted, and is the same three calls for every
server here).  Needs Debian's ``valgrind`` package; without it the measure is skipped.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence

from .echo import sequential
from .loopback import ServerProc

#: How long a server may take to start under valgrind (the interpreter runs ~50x slower there).
START_TIMEOUT = 180.0


def available() -> bool:
    """True when valgrind and callgrind_control are installed."""
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def per_round_trip(
    start: Callable[[Sequence[str], float], ServerProc], round_trips: int, warmup: int = 300
) -> float:
    """Instructions per round trip of the server ``start(prefix, timeout)`` starts, run under callgrind."""
    with tempfile.TemporaryDirectory(prefix="callgrind-") as folder:
        out = os.path.join(folder, "callgrind.out")
        prefix = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        server = start(prefix, START_TIMEOUT)
        try:
            sequential(server.port, warmup)
            _control("-i", "on", server.pid)
            sequential(server.port, round_trips)
            _control("-d", server.pid)  # the counts so far, in a file of their own
        finally:
            server.stop()
        # the dump's file (``.1``), not the one written at exit (the run's remainder, counted or not)
        total = sum(_total(path) for path in glob.glob(out + ".*"))
    if total <= 0:
        raise RuntimeError("callgrind counted nothing (was the dump written?)")
    return total / round_trips


def _control(*args: object) -> None:
    subprocess.run(["callgrind_control", *map(str, args)], check=True, capture_output=True, timeout=120)


def _total(path: str) -> int:
    """The instructions a callgrind output file counted (its ``summary:`` or ``totals:`` line)."""
    with open(path) as f:
        text = f.read()
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    return int(found.group(1)) if found else 0
