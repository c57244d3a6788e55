"""Smoke test: ``python -m benchmarks --quick`` runs end to end, so the scripts cannot rot.

Skipped when the peer packages (benchmarks/requirements.txt) are not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

for _name in ("wsproto", "websockets", "aiohttp", "picows"):
    pytest.importorskip(_name)

from benchmarks import instructions, latency  # noqa: E402  (after the peers are known to be there)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_frames_roundtrip() -> None:
    from benchmarks import frames

    for size in (0, 1, 125, 126, 65535, 65536, 70000):
        for kind in ("text", "binary"):
            payload = frames.make_payload(size, kind)
            data = payload.encode() if isinstance(payload, str) else payload
            assert len(data) == size
            stream = frames.client_stream(payload, 3)
            parsed, used = frames.parse_frames(stream)
            assert used == len(stream) == 3 * (size + frames.frame_overhead(size, True))
            op = frames.OP_TEXT if kind == "text" else frames.OP_BINARY
            assert parsed == [(op, True, data)] * 3


def test_quick_run(tmp_path: os.PathLike[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-charts", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = open(os.path.join(tmp_path, "RESULTS.md")).read()
    for title in (
        "Receive path",
        "Send path (server role",
        "Send path (client role",
        "Loopback echo",
        "Scale",
        "Hub: pub/sub",
    ):
        assert title in results
    assert "FAILED" not in results, results
    # Every peer measured in the sans-IO benchmarks.
    for peer in ("wsproto-lite-py", "wsproto", "websockets-py", "aiohttp-py"):
        assert f"| {peer} |" in results


def test_tls_send_runs(tmp_path: os.PathLike[str]) -> None:
    """``python -m benchmarks.tls_send`` end to end, one small repetition, every server."""
    pytest.importorskip("trustme")
    args = ("--reps", "1", "--total-mib", "1")
    results = _run_module(tmp_path, "RESULTS-tls-send.md", "benchmarks.tls_send", *args)
    assert "| 1 MiB |" in results and "| 16 MiB, reader stalled 1 s |" in results


def test_latency_runs(tmp_path: os.PathLike[str]) -> None:
    """The paired sequential rounds: every server answered (the floor server too), ratios reported."""
    args = ("--rounds", "1", "--round-trips", "20", "--instructions", "0")
    text = _run_module(tmp_path, "RESULTS-latency.md", "benchmarks.latency", *args)
    for server in ("wsproto-lite", "picows", "bare-python"):
        assert f"| {server} |" in text
    assert "picows / wsproto-lite: median" in text and "bare-python / wsproto-lite: median" in text
    assert "instructions per round trip" not in text


@pytest.mark.skipif(not instructions.available(), reason="valgrind is not installed")
def test_instructions_are_counted_under_callgrind() -> None:
    """The floor server's round trips, counted: a plausible count, the same on a second run (callgrind
    counts instructions, not time)."""
    start = latency.SERVERS[latency.FLOOR]
    first = instructions.per_round_trip(start, 200, warmup=50)
    assert 5_000 < first < 100_000
    assert abs(instructions.per_round_trip(start, 200, warmup=50) - first) < 0.05 * first


def _run_module(tmp_path: os.PathLike[str], results: str, module: str, *args: str) -> str:
    """``python -m module *args --out tmp_path/results``: it must exit 0; the results file it wrote."""
    out = os.path.join(tmp_path, results)
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--out", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return open(out).read()
