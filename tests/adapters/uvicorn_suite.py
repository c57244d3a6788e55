"""uvicorn's own WebSocket test suite, run against our protocol class next to uvicorn's two built-ins.

``python -m tests.adapters.uvicorn_suite [--results FILE]``

1. downloads the sdist of the *installed* uvicorn version (``pip download --no-binary :all: --no-deps``)
   into a cache directory and extracts its ``tests/``;
   every HTTP implementation that uvicorn's conftest parametrizes over but skips when it is not installed
   (httptools, zttp: :func:`optional_http_modules`) and that is not importable here is installed with
   ``pip install --target`` into that cache, beside the tests (the test extra installs both, so CI has them);
2. patches what is tied to uvicorn's internal classes (the list is :data:`PATCHES`, printed with the
   results): the ``ws_protocol_cls`` fixture gains a third parameter, ``wsproto-lite``
   (``wsproto_lite.adapters.uvicorn:WSProtoLiteProtocol``), and the two ``isinstance`` checks that name
   uvicorn's
   classes accept ours too;
3. runs ``tests/protocols/test_websocket.py`` once, all three classes in the same run, and prints
   passed/failed/skipped per class and per HTTP implementation.

Exit status (the CI rule): 1 when a test fails for our class while the same test (same HTTP protocol,
same parameters) passes for at least one of uvicorn's built-ins, or when any test was skipped because an
HTTP implementation is not installed (the suite would silently shrink to a fraction of itself); 0
otherwise. A test that fails for the built-ins too is an environment or suite problem, reported but not
held against us.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("UVICORN_SUITE_CACHE", "/tmp/wsproto-lite-uvicorn-suite"))
OURS = "wsproto-lite"
CLASSES = (OURS, "websockets-sansio", "wsproto")  # ids of the ws_protocol_cls fixture's parameters
NOT_INSTALLED = re.compile(r"\b(\w+) not installed")  # uvicorn's skip reason for a missing implementation

#: (file, old text, new text, why): every change made to uvicorn's tests.
PATCHES: list[tuple[str, str, str, str]] = [
    (
        "tests/conftest.py",
        '            "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol", '
        'id="websockets-sansio"\n        ),\n',
        '            "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol", '
        'id="websockets-sansio"\n        ),\n'
        f'        pytest.param("wsproto_lite.adapters.uvicorn:WSProtoLiteProtocol", id="{OURS}"),\n',
        "the ws_protocol_cls fixture also yields our class",
    ),
    (
        "tests/protocols/test_websocket.py",
        "assert isinstance(protocol, (_WSProtocol, WebSocketsSansIOProtocol))",
        "assert isinstance(protocol, (_WSProtocol, WebSocketsSansIOProtocol, WSProtoLiteProtocol))",
        "two keepalive tests check the connection's class against uvicorn's two classes",
    ),
    (
        "tests/protocols/test_websocket.py",
        "from uvicorn.server import ServerState\n",
        "from uvicorn.server import ServerState\n"
        "from wsproto_lite.adapters.uvicorn import WSProtoLiteProtocol\n",
        "import our class for those isinstance checks",
    ),
]


def installed_version() -> str:
    return importlib.metadata.version("uvicorn")


def fetch_suite(version: str) -> Path:
    """Download uvicorn's sdist (once per version) and extract its tests afresh; return the source tree.

    The tests are extracted on every run, so the patches below always apply to uvicorn's own text (a tree
    patched by an earlier version of this script would keep that version's edits).
    """
    tree = CACHE / f"uvicorn-{version}"
    sdist = CACHE / f"uvicorn-{version}.tar.gz"
    if not sdist.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps"]
            + [f"uvicorn=={version}", "-d", str(CACHE)],
            check=True,
        )
    shutil.rmtree(tree, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"uvicorn-{version}/tests/")]
        members += [tar.getmember(f"uvicorn-{version}/pyproject.toml")]
        tar.extractall(CACHE, members=members, filter="data")
    return tree


def optional_http_modules(tree: Path) -> list[str]:
    """The modules uvicorn's ``http_protocol_cls`` fixture skips when absent (``find_spec("httptools")``)."""
    conftest = (tree / "tests" / "conftest.py").read_text()
    end = conftest.find("def http_protocol_cls")
    if end < 0:
        raise SystemExit("uvicorn_suite: no http_protocol_cls fixture in uvicorn's tests/conftest.py")
    fixture = conftest[conftest.rfind("@pytest.fixture", 0, end) : end]
    return sorted(set(re.findall(r'find_spec\("([\w.]+)"\)', fixture)))


def install_missing(tree: Path, modules: list[str]) -> Path | None:
    """``pip install --target`` the modules not importable here into the cache; the directory, or None."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    target = CACHE / f"deps-{tree.name}-py{sys.version_info.major}{sys.version_info.minor}"
    if not all((target / m).exists() for m in missing):
        print(f"uvicorn_suite: installing {', '.join(missing)} into {target}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), *missing],
            check=True,
        )
    return target


def apply_patches(tree: Path) -> None:
    for name, old, new, why in PATCHES:
        path = tree / name
        text = path.read_text()
        if new in text:
            continue
        if text.count(old) < 1:
            raise SystemExit(f"uvicorn_suite: cannot apply patch to {name} ({why}): text not found")
        path.write_text(text.replace(old, new))


def run(tree: Path, junit: Path, deps: Path | None = None) -> int:
    path = [str(tree), str(REPO_ROOT)] + ([str(deps)] if deps is not None else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    argv = [sys.executable, "-m", "pytest", "tests/protocols/test_websocket.py", "-q"]
    argv += ["-p", "no:cacheprovider", "-o", "addopts=-rfE --strict-markers", "--junitxml", str(junit)]
    return subprocess.run(argv, cwd=tree, env=env).returncode


def outcomes(junit: Path) -> tuple[dict[str, str], Counter[str]]:
    """test id -> passed / failed / skipped; and how many skips each HTTP implementation's absence caused."""
    result = {}
    not_installed: Counter[str] = Counter()
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            result[name] = "failed"
        elif "skipped" in kinds:
            result[name] = "skipped"
            for child in case.iter("skipped"):
                found = NOT_INSTALLED.search(child.get("message", ""))
                if found:
                    not_installed[found.group(1)] += 1
        else:
            result[name] = "passed"
    return result, not_installed


def http_of(test_id: str, implementations: list[str]) -> str:
    """The HTTP implementation among the test's parameters ('' when it takes none)."""
    match = re.search(r"\[(.*)\]$", test_id)
    params = match.group(1).split("-") if match else []
    return next((impl for impl in implementations if impl in params), "")


def split_class(test_id: str) -> tuple[str, str]:
    """('test_x[h11-wsproto]' -> ('wsproto', 'test_x[h11-*]')); ('', id) when the test takes no class."""
    match = re.search(r"\[(.*)\]$", test_id)
    if match:
        params = match.group(1)
        for cls in CLASSES:  # longest ids first: "wsproto" is a prefix of "wsproto-lite"
            found = re.search(rf"(^|-){re.escape(cls)}(-|$)", params)
            if found:
                rest = params[: found.start()] + found.group(1) + "*" + found.group(2) + params[found.end() :]
                return cls, f"{test_id[: match.start()]}[{rest}]"
    return "", test_id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.adapters.uvicorn_suite", description=__doc__)
    ap.add_argument("--results", type=Path, default=None, help="also write the table (markdown) here")
    a = ap.parse_args(argv)
    version = installed_version()
    tree = fetch_suite(version)
    apply_patches(tree)
    optional = optional_http_modules(tree)
    deps = install_missing(tree, optional)
    junit = tree / "junit-websocket.xml"
    run(tree, junit, deps)
    results, not_installed = outcomes(junit)
    implementations = ["h11", *optional]
    per_class: dict[str, Counter[str]] = defaultdict(Counter)
    per_http: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    by_test: dict[str, dict[str, str]] = defaultdict(dict)
    for test_id, outcome in results.items():
        cls, generic = split_class(test_id)
        per_class[cls or "(no class parameter)"][outcome] += 1
        per_http[cls or "(no class parameter)", http_of(test_id, implementations)][outcome] += 1
        if cls:
            by_test[generic][cls] = outcome
    builtins = CLASSES[1:]
    held_against_us = sorted(
        t for t, o in by_test.items() if o.get(OURS) == "failed" and "passed" in map(o.get, builtins)
    )
    lines = [
        f"uvicorn {version}, tests/protocols/test_websocket.py from its sdist, one run "
        f"(Python {sys.version.split()[0]}):",
        "",
        "| ws_protocol_cls | passed | failed | skipped |",
        "| --- | ---: | ---: | ---: |",
    ]
    for cls in [*CLASSES, "(no class parameter)"]:
        c = per_class.get(cls, Counter())
        lines.append(f"| {cls} | {c['passed']} | {c['failed']} | {c['skipped']} |")
    lines += [
        "",
        "Per HTTP implementation (passed / failed / skipped):",
        "",
        "| ws_protocol_cls | " + " | ".join(implementations) + " |",
        "| --- |" + " ---: |" * len(implementations),
    ]
    for cls in [*CLASSES, "(no class parameter)"]:
        cells = [per_http.get((cls, impl), Counter()) for impl in implementations]
        lines.append(
            f"| {cls} | "
            + " | ".join(f"{c['passed']} / {c['failed']} / {c['skipped']}" for c in cells)
            + " |"
        )
    lines += ["", "Patches to uvicorn's tests:"] + [f"- `{name}`: {why}" for name, _, _, why in PATCHES]
    ours_failed = sorted(t for t, o in by_test.items() if o.get(OURS) == "failed")
    lines += ["", f"Failed for {OURS}: {', '.join(ours_failed) or 'none'}"]
    lines += [f"Failed for {OURS} but passed for a built-in: {', '.join(held_against_us) or 'none'}"]
    missing = ", ".join(f"{m} ({n} tests)" for m, n in sorted(not_installed.items()))
    lines += [f"Skipped because an HTTP implementation is not installed: {missing or 'none'}"]
    report = "\n".join(lines)
    print("\n" + report)
    if a.results:
        a.results.write_text(report + "\n")
    ran_ours = per_class.get(OURS, Counter())["passed"]
    if ran_ours == 0 or not results:  # a collection error, say: nothing was checked, which is no pass
        print(f"uvicorn_suite: no test passed for {OURS} (see pytest's output above)", file=sys.stderr)
        return 1
    return 1 if held_against_us or not_installed else 0


if __name__ == "__main__":
    sys.exit(main())
