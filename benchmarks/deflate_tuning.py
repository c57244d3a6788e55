"""permessage-deflate settings compared: memory per connection, throughput, small-message cost.

``python -m benchmarks.deflate_tuning`` prints the figures behind the defaults documented in
``wsproto_lite/_deflate.py`` (compression level, memLevel, window bits, compress threshold). It drives
the per-connection extension object directly (``encode`` / ``start_inbound`` / ``decode``), without
frames or sockets. Timings are best of 3 and machine-dependent: compare the rows of one run.
"""

from __future__ import annotations

import json
import random
import time
import tracemalloc

from wsproto_lite._deflate import _DeflateExtension

_rng = random.Random(7)


def json_message(size: int) -> bytes:
    """About ``size`` bytes of JSON-like text (a list of small records), cut to exactly ``size``."""
    items: list[str] = []
    total = 0
    while total < size:
        item = json.dumps(
            {
                "id": _rng.randrange(10**6),
                "user": _rng.choice(["alice", "bob", "carol", "dave"]),
                "score": round(_rng.random() * 100, 3),
                "tags": _rng.sample("abcde", 2),
                "active": _rng.random() < 0.5,
                "note": "".join(_rng.choices("abcdefghij ", k=20)),
            }
        )
        items.append(item)
        total += len(item) + 2
    return ("[" + ", ".join(items) + "]").encode()[:size]


def pair(level: int, mem_level: int, bits: int, nct: bool) -> tuple[_DeflateExtension, _DeflateExtension]:
    """Two ends of one negotiated connection with the same settings in both directions."""

    def end() -> _DeflateExtension:
        return _DeflateExtension(
            send_window_bits=bits,
            recv_window_bits=bits,
            send_no_context_takeover=nct,
            recv_no_context_takeover=nct,
            compress_level=level,
            mem_level=mem_level,
            compress_threshold=0,
        )

    return end(), end()


def exchange(a: _DeflateExtension, b: _DeflateExtension, message: bytes) -> None:
    """``a`` compresses and ``b`` inflates, then the other way round: both directions get their state."""
    for sender, receiver in ((a, b), (b, a)):
        rsv, payload = sender.encode(message, True, True, None)
        receiver.start_inbound(rsv)
        receiver.decode(payload, True, None)


def memory_per_connection(n: int = 200) -> None:
    print(f"memory per connection (tracemalloc, {n} connections, one 1 KiB message each way):")
    for mem_level, bits, nct, active in [
        (5, 15, False, False),
        (8, 15, False, True),
        (5, 15, False, True),
        (1, 15, False, True),
        (8, 12, False, True),
        (5, 12, False, True),
        (5, 9, False, True),
        (5, 15, True, True),
    ]:
        message = json_message(1024)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        connections = []
        for _ in range(n):
            a, b = pair(6, mem_level, bits, nct)
            if active:
                exchange(a, b, message)
            connections.append((a, b))
        used = (tracemalloc.get_traced_memory()[0] - before) / (2 * n)
        tracemalloc.stop()
        label = "idle, lazy (nothing sent yet)" if not active else f"memLevel={mem_level} window={bits}"
        print(f"  {label:32} no_context_takeover={nct!s:5}: {used / 1024:7.1f} KiB")
        del connections


def throughput() -> None:
    print("throughput (MB/s of uncompressed data, through encode/decode, context takeover, best of 3):")
    for size, count in [(1024, 2000), (2**20, 6)]:
        messages = [json_message(size) for _ in range(count)]
        for level, mem_level, bits in [(1, 5, 15), (6, 5, 15), (9, 5, 15), (6, 8, 15), (6, 5, 12)]:
            best_compress = best_decompress = float("inf")
            for _ in range(3):
                a, b = pair(level, mem_level, bits, False)
                t0 = time.perf_counter()
                frames = [a.encode(m, True, True, None) for m in messages]
                t1 = time.perf_counter()
                for rsv, payload in frames:
                    b.start_inbound(rsv)
                    b.decode(payload, True, None)
                t2 = time.perf_counter()
                best_compress, best_decompress = min(best_compress, t1 - t0), min(best_decompress, t2 - t1)
            total = size * count
            ratio = sum(len(p) for _, p in frames) / total
            print(
                f"  {size:>7} B  level {level} memLevel {mem_level} window {bits}: compress "
                f"{total / best_compress / 1e6:6.1f}  decompress {total / best_decompress / 1e6:6.1f}  "
                f"ratio {ratio:.3f}"
            )


def small_messages() -> None:
    print("small messages: compressed size / time per encode call (level 6):")
    for size in (16, 32, 64, 128, 256, 512):
        for nct in (False, True):
            a, _ = pair(6, 8, 15, nct)
            messages = [json_message(size) for _ in range(200)]
            t0 = time.perf_counter()
            sizes = [len(a.encode(m, True, True, None)[1]) for m in messages]
            per_call = (time.perf_counter() - t0) / len(messages)
            print(
                f"  {size:>4} B no_context_takeover={nct!s:5}: {sum(sizes) / len(sizes):6.1f} B, "
                f"{per_call * 1e6:6.1f} us"
            )


def main() -> None:
    memory_per_connection()
    throughput()
    small_messages()


if __name__ == "__main__":
    main()
