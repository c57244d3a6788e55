"""The fan-out loop (``_cfanout.c``) built with AddressSanitizer and UndefinedBehaviorSanitizer, under its
property tests (``test_cfanout.py``), in a copy of the package in a temporary directory (the same set-up as
``test_cspeedups_sanitized.py``, whose toolchain probe it uses). Skipped without a C compiler, the Python
headers or libasan."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from .test_cspeedups_sanitized import _toolchain

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("WSPROTO_LITE_NO_SPEEDUPS", "") not in ("", "0") or os.name != "posix",
    reason="the pure-Python pass of CI (or not POSIX): the sanitized build is checked in the other one",
)
def test_fanout_loop_properties_under_address_and_ub_sanitizers(tmp_path: Path) -> None:
    cc, libasan = _toolchain()
    package = tmp_path / "wsproto_lite"
    shutil.copytree(ROOT / "wsproto_lite", package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (tmp_path / "tests" / "wsproto_lite").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "__init__.py", tmp_path / "tests" / "__init__.py")
    shutil.copy(ROOT / "tests" / "wsproto_lite" / "__init__.py", tmp_path / "tests" / "wsproto_lite")
    shutil.copy(ROOT / "tests" / "wsproto_lite" / "test_cfanout.py", tmp_path / "tests" / "wsproto_lite")
    target = package / ("_cfanout" + sysconfig.get_config_var("EXT_SUFFIX"))
    build = [
        cc, "-shared", "-fPIC", "-g", "-O1", "-fno-omit-frame-pointer",
        "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
        "-Wall", "-Werror", "-I", sysconfig.get_paths()["include"],
        str(ROOT / "wsproto_lite" / "_cfanout.c"), "-o", str(target),
    ]  # fmt: skip
    compiled = subprocess.run(build, capture_output=True, text=True, timeout=120, check=False)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    env = {
        **os.environ,
        "LD_PRELOAD": libasan,
        "PYTHONMALLOC": "malloc",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",  # CPython keeps its objects until exit
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }
    env.pop("WSPROTO_LITE_NO_SPEEDUPS", None)
    probe = "from wsproto_lite.server import fanout as f; print(f.direct_enabled(), f.send_many.__module__)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", "wsproto_lite._cfanout"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:cov",
         "tests/wsproto_lite/test_cfanout.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = run.stdout[-3000:] + run.stderr[-3000:]
    assert run.returncode == 0, report
    assert "ERROR: AddressSanitizer" not in report and "runtime error" not in report
    assert " passed" in run.stdout and "skipped" not in run.stdout
