"""Which implementation of the hot byte loops is active: the compiled accelerator or pure Python.

The C module ``_cspeedups`` (built by ``pip install`` when a compiler exists, see setup.py) computes
exactly what the pure-Python reference in ``_frames.py`` computes, faster. It is used when it was built
and the environment does not say ``WSPROTO_LITE_NO_SPEEDUPS=1`` (read once, at import).
"""

from __future__ import annotations

import os
from types import ModuleType

__all__ = ["accelerator", "speedups_enabled"]


def _load() -> ModuleType | None:
    if os.environ.get("WSPROTO_LITE_NO_SPEEDUPS", "") not in ("", "0"):
        return None
    try:
        from . import _cspeedups
    except ImportError:  # not built: no compiler at install time, or a source checkout
        return None
    return _cspeedups


#: The compiled module, or None when the pure-Python code runs.
accelerator: ModuleType | None = _load()


def speedups_enabled() -> bool:
    """True when the compiled accelerator is active; False when pure Python runs.

    Off when it was not built (no C compiler at install time) or ``WSPROTO_LITE_NO_SPEEDUPS=1`` is set.
    """
    return accelerator is not None
