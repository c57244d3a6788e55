"""Worker processes: one per variant, each with its own environment (accelerations on/off).

The parent sends one JSON request per line on stdin and reads one JSON reply per line, so
measurements of different implementations can be interleaved repetition by repetition.
Run as ``python -m benchmarks.worker VARIANT``.
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import frames
from .peers import VARIANTS, load

_cache: dict[tuple[Any, ...], Any] = {}

#: glibc adapts its mmap threshold to the history of each process, which made copies of 64 KiB-1 MiB
#: buffers cost a page fault per 4 KiB in some workers and not in others (10x swings between identical
#: code paths). Fixed thresholds put every worker in the same warm steady state.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def _recv_input(size: int, kind: str, n: int) -> tuple[list[bytes], str | bytes]:
    key = ("recv", size, kind, n)
    if key not in _cache:
        _cache.clear()
        payload = frames.make_payload(size, kind)
        _cache[key] = (frames.chunked(frames.client_stream(payload, n)), payload)
    chunks: list[bytes]
    chunks, payload = _cache[key]
    return chunks, payload


def _rounds(one_round: Callable[[], float], min_seconds: float) -> int:
    """Run one untimed round (warming allocator and caches) and return how many rounds make a
    timed window of at least ``min_seconds``, so fast implementations are not timed over a
    fraction of a millisecond, where one preemption by another process decides the result."""
    t = one_round()
    gc.collect()
    return max(1, min(1000, math.ceil(min_seconds / max(t, 1e-6))))


def time_recv(mod: Any, size: int, kind: str, n: int, min_seconds: float = 0.05) -> dict[str, Any]:
    """Feed ``n`` masked frames in 64 KiB chunks to a fresh connection, ``rounds`` times; time until
    every message reached the app. Connections are set up (handshake) outside the timed window."""
    chunks, payload = _recv_input(size, kind, n)

    def one_round() -> float:
        adapter = mod.recv_adapter()
        t0 = time.perf_counter()
        for c in chunks:
            adapter.feed(c)
        return time.perf_counter() - t0

    rounds = _rounds(one_round, min_seconds)
    adapters = [mod.recv_adapter() for _ in range(rounds)]
    gc.collect()
    count = total = 0
    first = last = None
    t0 = time.perf_counter()
    for adapter in adapters:
        feed = adapter.feed
        for chunk in chunks:
            msgs = feed(chunk)
            if msgs:
                if first is None:
                    first = msgs[0]
                count += len(msgs)
                for m in msgs:
                    total += len(m)
                last = msgs[-1]
    seconds = time.perf_counter() - t0
    want = str if kind == "text" else bytes
    n_all = n * rounds
    ok = (
        count == n_all
        and total == n_all * size
        and type(last) is want
        and first == payload
        and last == payload
    )
    return {
        "seconds": seconds,
        "count": count,
        "bytes": total,
        "ok": ok,
        "why": "" if ok else f"count={count}/{n_all} bytes={total}/{n_all * size} type={type(last).__name__}",
    }


def _flatten(item: Any) -> bytes:
    if isinstance(item, list):
        return b"".join(bytes(x) for x in item)
    return bytes(item)


def time_send(mod: Any, size: int, kind: str, n: int, role: str, min_seconds: float = 0.05) -> dict[str, Any]:
    """Turn messages into wire bytes with a handshaken connection of ``role`` (``n`` x rounds).

    Outputs are not retained (an I/O layer writes and drops them); the first and the last are
    checked byte for byte, every call must return exactly one frame."""
    payload = frames.make_payload(size, kind)

    def loop(adapter: Any, count: int) -> tuple[Any, Any]:
        send: Callable[[Any], Any] = adapter.send
        first = out = send(payload)
        for _ in range(count - 1):
            out = send(payload)
        return first, out

    def one_round() -> float:
        adapter = mod.send_adapter(role)
        t0 = time.perf_counter()
        loop(adapter, n)
        return time.perf_counter() - t0

    n_all = n * _rounds(one_round, min_seconds)
    adapter = mod.send_adapter(role)
    gc.collect()
    t0 = time.perf_counter()
    first, last = loop(adapter, n_all)
    seconds = time.perf_counter() - t0
    masked = role == "client"
    expect = size + frames.frame_overhead(size, masked)
    data = payload.encode() if isinstance(payload, str) else payload
    opcode = frames.OP_TEXT if kind == "text" else frames.OP_BINARY
    why = ""
    for wire in (_flatten(first), _flatten(last)):
        parsed, used = frames.parse_frames(wire)
        if len(wire) != expect or used != expect or parsed != [(opcode, True, data)]:
            why = f"wire={len(wire)}/{expect} frames={parsed[:1]!r:.80}"
        elif bool(wire[1] & 0x80) != masked:
            why = "mask bit wrong"
    return {"seconds": seconds, "count": n_all, "bytes": n_all * expect, "ok": not why, "why": why}


def time_copy(size: int, n: int, min_seconds: float = 0.05) -> dict[str, Any]:
    """The ceiling of a receive path: one plain copy of each ``size``-byte message into a new ``bytes``
    (``bytes(memoryview)``: allocate and memcpy), ``n`` x rounds."""
    view = memoryview(os.urandom(size))

    def one_round() -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            bytes(view)
        return time.perf_counter() - t0

    n_all = n * _rounds(one_round, min_seconds)
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n_all):
        copy = bytes(view)
    seconds = time.perf_counter() - t0
    ok = copy == view
    return {
        "seconds": seconds,
        "count": n_all,
        "bytes": n_all * size,
        "ok": ok,
        "why": "" if ok else "bad copy",
    }


def main(variant: str) -> None:
    os.environ.update(VARIANTS[variant].env)  # before the adapter imports its library
    try:
        mod = load(variant)
        reply: dict[str, Any] = {"ready": True, **mod.info()}
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        reply = {"ready": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(reply), flush=True)
    if not reply["ready"]:
        return
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "recv":
                res = time_recv(mod, req["size"], req["kind"], req["n"], req.get("min_seconds", 0.05))
            elif req["op"] == "copy":
                res = time_copy(req["size"], req["n"], req.get("min_seconds", 0.05))
            elif req["op"] == "send":
                res = time_send(
                    mod, req["size"], req["kind"], req["n"], req["role"], req.get("min_seconds", 0.05)
                )
            else:
                raise ValueError(f"unknown op {req['op']}")
        except Exception as exc:  # noqa: BLE001
            res = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()[-800:],
            }
        print(json.dumps(res), flush=True)


class Worker:
    """A running worker process for one variant."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        env = {**os.environ, **VARIANTS[variant].env, **MALLOC_ENV, "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", variant],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        self.info: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            return {"ready": False, "error": f"worker exited ({self.proc.wait()})"}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


if __name__ == "__main__":
    main(sys.argv[1])


class Pool:
    """One worker per variant; variants whose import fails are kept aside with the reason."""

    def __init__(self, variants: list[str]) -> None:
        self.workers: dict[str, Worker] = {}
        self.unavailable: dict[str, str] = {}
        for name in variants:
            w = Worker(name)
            if w.info.get("ready"):
                self.workers[name] = w
            else:
                self.unavailable[name] = w.info.get("error", "?")
                w.close()

    def interleaved(
        self, reps: int, only: list[str] | None = None, **req: Any
    ) -> dict[str, list[dict[str, Any]]]:
        """Run ``req`` ``reps`` times on every worker (or those named in ``only``), rotating the order each
        repetition."""
        names = [n for n in self.workers if only is None or n in only]
        results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for rep in range(reps):
            k = rep % len(names) if names else 0
            for name in names[k:] + names[:k]:
                results[name].append(self.workers[name].call(**req))
        return results

    def close(self) -> None:
        for w in self.workers.values():
            w.close()
