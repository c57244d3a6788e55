"""A long-running hub's cyclic garbage collector: young objects only, no full collections.

The hub's objects (connections, sessions, subscriptions) are freed by reference counting the moment they
end; the tests prove it with the collector off (tests/server/test_server_memory.py and the hub's memory
tests).  CPython's collector still rescans every live container object in its full (generation 2)
collections, and with thousands of connections that is a pause of the whole loop: in the scale profile
(benchmarks/hub_profile.py, one hub process with 5 000 connections) gen-2 collections took up to 320 ms
each, 1.8 s over a 40 s run, and a pause that long is every delivery's latency at that moment (the p99).

``young_only()`` keeps the frequent, cheap generation-0 collections (what a request's short-lived cycles,
such as an exception and its traceback, need) and stops the older generations from ever being collected
automatically: a survivor is never rescanned.  The objects made at start-up (imports, configuration) are
frozen first.  The cost: a reference cycle that forms among objects that already survived a collection
is not reclaimed by these; run under the profile's load, the hub made none (its only cyclic garbage at
exit was 1,483 start-up objects: argparse, enum, datetime).  As a safety net for what it does not
exercise (a library's objects replaced on a reconnect, say), ``full_every`` runs one full collection an
hour: one pause an hour instead of one every few seconds of connection churn.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .transport import HubLoop

__all__ = ["FULL_EVERY", "NEVER", "full_every", "young_only"]

FULL_EVERY = 3600.0
"""Seconds between the safety net's full collections."""

NEVER = 2**31 - 1
"""A generation threshold never reached: that generation is not collected automatically."""


def young_only(threshold0: int = 700) -> None:
    """Freeze what exists now, then collect generation 0 every ``threshold0`` allocations and the older
    generations never (call once, when the process is set up)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold0, NEVER, NEVER)


def full_every(loop: HubLoop, seconds: float = FULL_EVERY) -> None:
    """Run a full collection every ``seconds`` on ``loop`` (the safety net for old cycles)."""

    def collect() -> None:
        gc.collect()
        loop.call_later(seconds, collect)

    loop.call_later(seconds, collect)
