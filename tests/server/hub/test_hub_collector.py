"""collector.py: the hub process's collector collects young cycles and never rescans survivors."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from wsproto_lite.hub.collector import NEVER, young_only


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    enabled = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        (gc.enable if enabled else gc.disable)()


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_young_cycles_are_still_collected_and_survivors_never_rescanned(collector_restored: None) -> None:
    gc.enable()
    young_only(100)
    assert gc.get_threshold() == (100, NEVER, NEVER)
    assert gc.get_freeze_count() > 0  # what existed at start-up is out of every scan
    young = _cycle()
    for _ in range(100):  # allocations: generation 0 is collected on its own
        held = [Node() for _ in range(150)]
        del held
        if young() is None:
            break
    assert young() is None  # a short-lived cycle (an exception and its traceback) is reclaimed
    counts = []
    for _ in range(100):
        held = [Node() for _ in range(150)]
        del held
        counts.append(gc.get_count()[1])
    assert max(counts) > 10  # generation 1's default threshold passed, and it was never collected


class Timers:
    """A loop's ``call_later``, run by hand."""

    def __init__(self) -> None:
        self.due: list[tuple[float, Any]] = []

    def call_later(self, delay: float, callback: Any, *args: Any) -> None:
        self.due.append((delay, callback))


def test_a_full_collection_runs_every_hour_as_the_safety_net(collector_restored: None) -> None:
    from wsproto_lite.hub.collector import FULL_EVERY, full_every

    young_only()
    timers = Timers()
    full_every(timers)  # type: ignore[arg-type]
    assert [delay for delay, _ in timers.due] == [FULL_EVERY]
    held = Node()
    held.other = Node()
    held.other.other = held
    old = weakref.ref(held)
    gc.collect(0)  # it survives a young collection...
    del held  # ...then becomes garbage: no young collection looks at it any more
    gc.collect(0)
    assert old() is not None
    full = gc.get_stats()[2]["collections"]
    timers.due.pop()[1]()
    assert old() is None and gc.get_stats()[2]["collections"] == full + 1
    assert [delay for delay, _ in timers.due] == [FULL_EVERY]  # and again in an hour
