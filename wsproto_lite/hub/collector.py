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
is not reclaimed; run under the profile's load, the hub made none (its only cyclic garbage at exit was
1,483 start-up objects: argparse, enum, datetime).
"""

from __future__ import annotations

import gc

__all__ = ["NEVER", "young_only"]

NEVER = 2**31 - 1
"""A generation threshold never reached: that generation is not collected automatically."""


def young_only(threshold0: int = 700) -> None:
    """Freeze what exists now, then collect generation 0 every ``threshold0`` allocations and the older
    generations never (call once, when the process is set up)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold0, NEVER, NEVER)
