"""Build of the optional C accelerator; the package metadata is in setup.cfg.

``pip install`` compiles ``wsproto_lite/_cspeedups.c`` (and, on POSIX, the fan-out loop ``_cfanout.c``)
when a C compiler and the Python headers exist. Without them the build step is skipped with one line on
stderr and the package installs as pure Python (``wsproto_lite.speedups_enabled()`` then returns False).
``WSPROTO_LITE_NO_SPEEDUPS=1`` at build time skips the compilation too.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed compilation into one line and a pure-Python install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - no compiler at all (DistutilsPlatformError and kin)
            self._skipped(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - compiler or headers missing, compile error
            self._skipped(exc)

    @staticmethod
    def _skipped(exc: Exception) -> None:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:160]
        print(f"wsproto-lite: C speedups not built ({reason}); using pure Python", file=sys.stderr)


ext_modules = []
if os.environ.get("WSPROTO_LITE_NO_SPEEDUPS", "") in ("", "0"):
    ext_modules.append(
        Extension(
            "wsproto_lite._cspeedups",
            sources=["wsproto_lite/_cspeedups.c"],
            extra_compile_args=["-O3"] if os.name == "posix" else [],
            optional=True,
        )
    )
    if os.name == "posix":  # the fan-out loop over sockets (send() with MSG_NOSIGNAL)
        ext_modules.append(
            Extension(
                "wsproto_lite._cfanout",
                sources=["wsproto_lite/_cfanout.c"],
                extra_compile_args=["-O2"],
                optional=True,
            )
        )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
