"""The C accelerator built with AddressSanitizer and UndefinedBehaviorSanitizer, under the property tests.

The extension is compiled with ``-fsanitize=address,undefined`` into a copy of the package in a temporary
directory, and the masking, payload-buffer, frame and reader tests run there in a subprocess (the Python
binary is not instrumented, so the ASan runtime is preloaded; ``PYTHONMALLOC=malloc`` puts every Python
object in its own malloc block, so a byte written past a ``bytes`` object is caught). Any report aborts
the subprocess. Skipped without a C compiler, the Python headers or libasan.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "wsproto_lite" / "_cspeedups.c"
TESTS = ["test_speedups.py", "test_reader.py"]


def _toolchain() -> tuple[str, str]:
    """The C compiler and the ASan runtime to preload, or skip."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        pytest.skip("no Python headers")
    found = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True, check=False)
    libasan = found.stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        pytest.skip("no libasan for this compiler")
    return cc, os.path.realpath(libasan)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("WSPROTO_LITE_NO_SPEEDUPS", "") not in ("", "0"),
    reason="the pure-Python pass of CI: the sanitized build is checked in the other one",
)
def test_reader_and_masking_properties_under_address_and_ub_sanitizers(tmp_path: Path) -> None:
    cc, libasan = _toolchain()
    package = tmp_path / "wsproto_lite"
    shutil.copytree(ROOT / "wsproto_lite", package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copytree(
        ROOT / "tests" / "wsproto_lite",
        tmp_path / "tests" / "wsproto_lite",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "tests" / "__init__.py", tmp_path / "tests" / "__init__.py")
    # Fewer examples per property than the normal run: the point is running the C code under the
    # sanitizers on varied input, in well under a minute.
    (tmp_path / "tests" / "conftest.py").write_text(
        "from hypothesis import HealthCheck, settings\n"
        "settings.register_profile('sanitized', deadline=None, max_examples=25,"
        " suppress_health_check=list(HealthCheck))\n"
        "settings.load_profile('sanitized')\n"
    )
    target = package / ("_cspeedups" + sysconfig.get_config_var("EXT_SUFFIX"))
    build = [
        cc, "-shared", "-fPIC", "-g", "-O1", "-fno-omit-frame-pointer",
        "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
        "-Wall", "-Werror", "-I", sysconfig.get_paths()["include"], str(SOURCE), "-o", str(target),
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
    # The sanitized build is the one in use, and the sanitizer runtime is loaded.
    probe = (
        "import wsproto_lite, wsproto_lite._cspeedups as c; "
        "print(wsproto_lite.speedups_enabled(), c.__file__, 'libasan' in open('/proc/self/maps').read())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", str(target), "True"]

    tests = [f"tests/wsproto_lite/{name}" for name in TESTS]
    run = subprocess.run(
        # (the environment-variable tests only start more interpreters: they run in the normal pass)
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:cov",
            "--durations=5",
            "-k",
            "not environment_variable",
            *tests,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = run.stdout[-3000:] + run.stderr[-3000:]
    assert run.returncode == 0, report
    assert "ERROR: AddressSanitizer" not in report and "runtime error" not in report
    assert " passed" in run.stdout
