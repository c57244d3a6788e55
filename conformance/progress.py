"""Live progress from wstest's stdout: one updating line on a TTY, plain lines otherwise."""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

_TOTAL = re.compile(r"^Ok, will run (\d+) test cases")
_RUNNING = re.compile(r"^Running test case ID (\S+) for agent (\S+)")
_RESULT = re.compile(r"^@@case-result (\S+) (\S+) (\S+) (\S+)")
_CONN_FAILED = re.compile(r"^Connection to .* failed")

GOOD = ("OK", "INFORMATIONAL")


def is_strict_ok(behavior: str, behavior_close: str) -> bool:
    """The "100 % strict" criterion for one case."""
    return behavior in GOOD and behavior_close in GOOD


@dataclass
class Progress:
    """State parsed from wstest output so far."""

    total: int | None = None
    started: int = 0
    current: str = ""
    finished: int = 0
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def feed(self, line: str) -> str | None:
        """Update from one stdout line; return an event kind or None if irrelevant."""
        line = line.rstrip("\r\n")
        if m := _TOTAL.match(line):
            self.total = int(m.group(1))
            return "total"
        if m := _RUNNING.match(line):
            self.started += 1
            self.current = m.group(1)
            return "start"
        if m := _RESULT.match(line):
            self.finished += 1
            case, behavior, close = m.group(1), m.group(2), m.group(3)
            if not is_strict_ok(behavior, close):
                self.failures.append(f"{case} {behavior}/{close}")
                return "fail"
            return "done"
        if _CONN_FAILED.match(line):
            self.errors.append(line)
            return "error"
        return None


class Reporter:
    """Renders Progress to *out*: an updating line on a TTY, plain lines otherwise."""

    def __init__(
        self, role: str, out: IO[str] = sys.stderr, tty: bool | None = None, tick: float = 1.0
    ) -> None:
        self.role = role
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.t0 = time.monotonic()
        self.progress = Progress()
        self._dirty = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if self.tty and tick:
            threading.Thread(target=self._tick, args=(tick,), daemon=True).start()

    def feed(self, line: str) -> None:
        """Parse one wstest line and report it."""
        with self._lock:
            kind = self.progress.feed(line)
            if kind is None:
                return
            if self.tty:
                self._redraw()
                if kind in ("fail", "error"):
                    self._println(self._event_text(kind))
            elif kind in ("start", "fail", "error", "total"):
                self._println(self._event_text(kind))

    def close(self) -> None:
        """Stop the ticker and finish the updating line."""
        self._stop.set()
        with self._lock:
            if self.tty and self._dirty:
                self.out.write("\n")
                self.out.flush()
                self._dirty = False

    def _tick(self, every: float) -> None:
        """Keep the elapsed time moving during long cases (TTY only)."""
        while not self._stop.wait(every):
            with self._lock:
                if self._dirty:
                    self._redraw()

    def status(self) -> str:
        """'[server] case 12 of 517 (2.3)  0:41  failures: 1'."""
        p = self.progress
        total = p.total if p.total is not None else "?"
        return (
            f"[{self.role}] case {p.started} of {total} ({p.current or '-'})  "
            f"{_clock(time.monotonic() - self.t0)}  failures: {len(p.failures)}"
        )

    def _event_text(self, kind: str) -> str:
        p = self.progress
        if kind == "fail":
            return f"[{self.role}]   not strict: {p.failures[-1]}"
        if kind == "error":
            return f"[{self.role}]   {p.errors[-1]}"
        if kind == "total":
            return f"[{self.role}] {p.total} cases to run"
        return self.status()

    def _redraw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        self.out.write("\r" + self.status()[: width - 1].ljust(width - 1))
        self.out.flush()
        self._dirty = True

    def _println(self, text: str) -> None:
        if self.tty and self._dirty:
            self.out.write("\r" + " " * (shutil.get_terminal_size((100, 20)).columns - 1) + "\r")
        self.out.write(text + "\n")
        self.out.flush()
        if self.tty:
            self._redraw()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
