"""The C extensions built with AddressSanitizer and UndefinedBehaviorSanitizer, under the core tests.

``python3 -m tests.wsproto_lite.sanitized [test files...]`` (CI's sanitizer step; default: every test in
tests/wsproto_lite) compiles ``_cspeedups.c`` and ``_cfanout.c`` with ``-fsanitize=address,undefined``
into a copy of the package in a temporary directory (never in place), then runs the tests there in a
subprocess with them loaded. The Python binary is not instrumented, so the ASan runtime is preloaded;
``PYTHONMALLOC=malloc`` puts every Python object in its own malloc block, so a byte written past a
``bytes`` object is caught.
Any report aborts the run (``halt_on_error``, ``-fno-sanitize-recover``); leaks are not checked (CPython
keeps objects until exit). Hypothesis runs fewer examples per property than the normal run: the point is
the C code under the sanitizers on varied input, in well under two minutes.

Exit status 0: built, loaded and every test passed with no report; 1: a failure or a report; 2: no C
compiler, Python headers or libasan here (printed; the caller decides whether that is a skip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Every C extension of the package (the accelerator, and the fan-out loop on POSIX).
SOURCES = [ROOT / "wsproto_lite" / "_cspeedups.c"] + (
    [ROOT / "wsproto_lite" / "_cfanout.c"] if os.name == "posix" else []
)
UNAVAILABLE = 2

# Tests that only start more interpreters to read the environment, and this check itself.
DESELECT = "not environment_variable and not sanitizer"

_HYPOTHESIS_PROFILE = (
    "from hypothesis import HealthCheck, settings\n"
    "settings.register_profile('sanitized', deadline=None, max_examples=25,"
    " suppress_health_check=list(HealthCheck))\n"
    "settings.load_profile('sanitized')\n"
    "\n"
    "def pytest_configure(config):\n"
    "    config.addinivalue_line('markers', 'slow: takes more than a few seconds')\n"
)


def toolchain() -> tuple[str, str] | str:
    """The C compiler and the ASan runtime to preload, or why there are none."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return "no C compiler"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers"
    found = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True, check=False)
    libasan = found.stdout.strip()
    if not os.path.isabs(libasan) or not os.path.exists(libasan):
        return "no libasan for this compiler"
    return cc, os.path.realpath(libasan)


def prepare(workdir: Path, cc: str) -> Path:
    """Copy the package and the core tests into ``workdir`` and build the sanitized extension there."""
    package = workdir / "wsproto_lite"
    shutil.copytree(ROOT / "wsproto_lite", package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    tests = workdir / "tests"
    shutil.copytree(
        ROOT / "tests" / "wsproto_lite", tests / "wsproto_lite", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "tests" / "__init__.py", tests / "__init__.py")
    (tests / "conftest.py").write_text(_HYPOTHESIS_PROFILE)
    for source in SOURCES:
        target = package / (source.stem + sysconfig.get_config_var("EXT_SUFFIX"))
        build = [
            cc, "-shared", "-fPIC", "-g", "-O1", "-fno-omit-frame-pointer",
            "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-Wall", "-Werror", "-I", sysconfig.get_paths()["include"], str(source), "-o", str(target),
        ]  # fmt: skip
        compiled = subprocess.run(build, capture_output=True, text=True, timeout=120, check=False)
        if compiled.returncode != 0:
            raise RuntimeError(f"sanitized build of {source.name} failed:\n{compiled.stderr[-3000:]}")
    target = package / ("_cspeedups" + sysconfig.get_config_var("EXT_SUFFIX"))
    return target


def environment(libasan: str) -> dict[str, str]:
    env = {
        **os.environ,
        "LD_PRELOAD": libasan,
        "PYTHONMALLOC": "malloc",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",  # CPython keeps its objects until exit
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }
    env.pop("WSPROTO_LITE_NO_SPEEDUPS", None)
    env.pop("PYTHONPATH", None)
    return env


def check_loaded(workdir: Path, target: Path, env: dict[str, str]) -> None:
    """The sanitized build is the one imported, and the sanitizer runtime is in the process."""
    probe = (
        "import wsproto_lite, wsproto_lite._cspeedups as c; "
        "print(wsproto_lite.speedups_enabled(), c.__file__, 'libasan' in open('/proc/self/maps').read())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )
    if out.returncode != 0 or out.stdout.split() != ["True", str(target), "True"]:
        raise RuntimeError(f"the sanitized build is not the one loaded: {out.stdout!r}\n{out.stderr[-3000:]}")


def run(test_files: list[str], timeout: float = 300) -> tuple[int, str]:
    """Build, load and run ``test_files`` (paths under tests/wsproto_lite; all when empty) sanitized.

    Returns the exit status (see the module docstring) and the tail of the output."""
    tools = toolchain()
    if isinstance(tools, str):
        return UNAVAILABLE, tools
    cc, libasan = tools
    with tempfile.TemporaryDirectory(prefix="wsproto-lite-sanitized-") as tmp:
        workdir = Path(tmp)
        target = prepare(workdir, cc)
        env = environment(libasan)
        check_loaded(workdir, target, env)
        tests = [f"tests/wsproto_lite/{name}" for name in test_files] or ["tests/wsproto_lite"]
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:cov"]
        command += ["--capture=sys", "--strict-markers", "--durations=5", "-k", DESELECT, *tests]
        done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    # The sanitizer's report first (it is followed by long Python tracebacks), then the test summary.
    found = [done.stderr.find(marker) for marker in ("ERROR: AddressSanitizer", "runtime error")]
    first = min((at for at in found if at >= 0), default=-1)
    report = (done.stderr[max(first - 200, 0) :][:4000] + "\n...\n" if first >= 0 else "") + done.stdout[
        -4000:
    ]
    reported = first >= 0
    if done.returncode != 0 and not reported:
        report += done.stderr[-4000:]
    passed = done.returncode == 0 and not reported and " passed" in done.stdout
    return (0 if passed else 1), report


def main(argv: list[str]) -> int:
    status, report = run(argv)
    print(report)
    print(
        {
            0: "sanitized C accelerator: every test passed, no report",
            1: "sanitized C accelerator: FAILED",
        }.get(status, f"sanitized C accelerator: not checked here ({report})")
    )
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
