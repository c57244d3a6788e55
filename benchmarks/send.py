"""Send path, sans-IO: messages -> wire bytes, server (unmasked) and client (masked) roles."""

from __future__ import annotations

from . import recv
from .report import Table
from .worker import Pool

VARIANTS = recv.SEND_VARIANTS


def run(pool: Pool, *, quick: bool, reps: int) -> list[Table]:
    """One table per role."""
    return [recv.measure(pool, quick=quick, reps=reps, op="send", role=role) for role in ("server", "client")]
