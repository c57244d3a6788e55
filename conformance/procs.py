"""Subprocess helpers: free ports, waiting for a listener, stopping process groups."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago on *host*."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_accepts(port: int, host: str = HOST) -> bool:
    """True when a TCP connect to host:port succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, host: str = HOST) -> None:
    """Wait until host:port accepts; raise if *proc* exits first or *timeout* passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        if port_accepts(port, host):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f} s")


def start(
    argv: Sequence[str],
    log: IO[bytes] | None,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdout_pipe: bool = False,
) -> subprocess.Popen[bytes]:
    """Start *argv* in its own process group (so stop() can end its children too)."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout_pipe else log,
        stderr=subprocess.STDOUT if stdout_pipe else log,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
    """SIGTERM the process group of *proc*, SIGKILL after *grace* s; return its exit code."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=grace)
    else:
        _signal_group(proc, signal.SIGKILL)  # stray children of an exited leader
    return proc.returncode


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def python_env(repo_root: Path) -> dict[str, str]:
    """os.environ with *repo_root* first on PYTHONPATH and unbuffered output."""
    env = dict(os.environ)
    parts = [str(repo_root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    return env
