"""Receive path, sans-IO: masked client frames in 64 KiB chunks -> whole messages in the app."""

from __future__ import annotations

from typing import Any

from .peers import OURS
from .report import Table, fmt_rate, fmt_size, median, ratio_cells
from .worker import Pool

VARIANTS = [OURS, "wsproto", "websockets", "websockets-py", "aiohttp", "aiohttp-py"]

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


def run(pool: Pool, *, quick: bool, reps: int, op: str = "recv", role: str | None = None) -> Table:
    """Measure every case on every variant of ``pool``; return the table (msgs/s, medians)."""
    title = (
        "Receive path (sans-IO, masked client frames fed in 64 KiB chunks)"
        if op == "recv"
        else (f"Send path ({role} role: {'masked' if role == 'client' else 'unmasked'} frames)")
    )
    variants = list(pool.workers)
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
            res = pool.interleaved(reps, **req)
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
