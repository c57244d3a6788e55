"""Receive path, sans-IO: masked client frames in 64 KiB chunks -> whole messages in the app."""

from __future__ import annotations

from typing import Any

from .peers import OURS, OURS_PY
from .report import Table, fmt_rate, fmt_size, median, ratio_cells
from .worker import Pool

#: The variants measured sending: picows' adapter receives only (see benchmarks/peers/picows_peer.py).
SEND_VARIANTS = [OURS, OURS_PY, "wsproto", "websockets", "websockets-py", "aiohttp", "aiohttp-py"]
VARIANTS = [*SEND_VARIANTS, "picows"]

#: Shortest timed window: fast implementations repeat the case (fresh connections) until it lasts this long.
MIN_SECONDS = 0.05

# (payload size, kinds, messages per round)
CASES: list[tuple[int, tuple[str, ...], int]] = [
    (16, ("text", "binary"), 5000),
    (125, ("text", "binary"), 5000),
    (1024, ("text", "binary"), 3000),
    (65536, ("text", "binary"), 100),
    (1 << 20, ("text", "binary"), 8),
]

#: --quick: one case per frame-length encoding (7-bit, 16-bit, 64-bit), both kinds covered.
QUICK_KINDS: dict[int, tuple[str, ...]] = {16: ("text",), 1024: ("binary",), 1 << 20: ("text",)}


def run(pool: Pool, *, quick: bool, reps: int) -> list[Table]:
    """The receive table (messages/s), then the large cases in GB/s next to a plain copy."""
    table = measure(pool, quick=quick, reps=reps)
    return [table, throughput(pool, table, quick=quick, reps=reps)]


#: The plain-copy ceiling is measured in this variant's worker (any worker would do).
CEILING = "bytes copy"


def throughput(pool: Pool, table: Table, *, quick: bool, reps: int) -> Table:
    """GB/s of payload for the cases of 64 KiB and more, and a plain ``bytes`` copy of the same size."""
    variants = [v for v in pool.workers]
    gbps = Table(
        title="Receive throughput of large messages, next to a plain copy (the ceiling)",
        key="recv-gbps",
        columns=["case", *variants, CEILING],
        unit=f"GB/s of payload (median); {CEILING} = `bytes(memoryview(payload))` per message, in one worker",
    )
    copier = pool.workers.get(OURS) or next(iter(pool.workers.values()), None)
    for size, _kinds, n in CASES:
        if size < 65536:
            continue
        ceiling = None
        if copier is not None and not quick:
            runs = [copier.call(op="copy", size=size, n=n, min_seconds=MIN_SECONDS) for _ in range(reps)]
            if all(r.get("ok") for r in runs):
                ceiling = median([r["bytes"] / r["seconds"] for r in runs])
        for label, rates in table.data.items():
            if rates.get("_bytes") != size:
                continue
            cells = [rates.get(v) for v in variants]
            gbps.rows.append([label, *[_gb(None if r is None else r * size) for r in cells], _gb(ceiling)])
    return gbps


def _gb(bytes_per_second: float | None) -> str:
    return "n/a" if bytes_per_second is None else f"{bytes_per_second / 1e9:.2f}"


def measure(pool: Pool, *, quick: bool, reps: int, op: str = "recv", role: str | None = None) -> Table:
    """Measure every case on every variant of ``pool``; return the table (msgs/s, medians)."""
    title = (
        "Receive path (sans-IO, masked client frames fed in 64 KiB chunks)"
        if op == "recv"
        else (f"Send path ({role} role: {'masked' if role == 'client' else 'unmasked'} frames)")
    )
    among = VARIANTS if op == "recv" else SEND_VARIANTS
    variants = [v for v in pool.workers if v in among]
    table = Table(
        title=title,
        key=f"{op}-{role}" if role else op,
        columns=["case", *variants, *[f"us vs {v}" for v in variants if v != OURS and OURS in variants]],
        unit="messages/s (median); ratio > 1 means we are faster",
    )
    for size, kinds, n in CASES:
        if quick:
            n = max(2, n // 100)
            kinds = QUICK_KINDS.get(size, ())
        for kind in kinds:
            req: dict[str, Any] = {
                "op": op,
                "size": size,
                "kind": kind,
                "n": n,
                "min_seconds": 0.002 if quick else MIN_SECONDS,
            }
            if role:
                req["role"] = role
            res = pool.interleaved(reps, variants, **req)
            rates: dict[str, float | None] = {}
            for name, runs in res.items():
                bad = [r for r in runs if not r.get("ok")]
                if bad:
                    table.notes.append(
                        f"{name} {fmt_size(size)} {kind}: FAILED {bad[0].get('why') or bad[0].get('error')}"
                    )
                    rates[name] = None
                else:
                    rates[name] = median([r["count"] / r["seconds"] for r in runs])
            label = f"{fmt_size(size)} {kind}"
            table.rows.append(
                [
                    label,
                    *[fmt_rate(rates[v]) for v in variants],
                    *(ratio_cells(rates, OURS, variants) if OURS in variants else []),
                ]
            )
            table.data[label] = {**rates, "_bytes": size}
    return table
