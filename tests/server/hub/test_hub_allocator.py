"""allocator.py: fixed malloc thresholds on glibc, nothing elsewhere."""

from __future__ import annotations

import platform

from wsproto_lite.hub.allocator import fix_malloc_thresholds


def test_thresholds_are_set_on_glibc() -> None:
    libc, _version = platform.libc_ver()
    assert fix_malloc_thresholds() is (libc == "glibc")
