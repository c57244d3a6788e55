"""uvicorn's own WebSocket test suite, run against our protocol class next to uvicorn's two built-ins.

``python -m tests.adapters.uvicorn_suite [--results FILE]``

1. downloads the sdist of the *installed* uvicorn version (``pip download --no-binary :all: --no-deps``)
   into a cache directory and extracts its ``tests/``;
2. patches what is tied to uvicorn's internal classes (the list is :data:`PATCHES`, printed with the
   results): the ``ws_protocol_cls`` fixture gains a third parameter, ``wsproto-lite``
   (``wsproto_lite.adapters.uvicorn:WSProtoLiteProtocol``), and the two ``isinstance`` checks that name
   uvicorn's
   classes accept ours too;
3. runs ``tests/protocols/test_websocket.py`` once, all three classes in the same run, and prints
   passed/failed/skipped per class.

Exit status (the CI rule): 1 when a test fails for our class while the same test (same HTTP protocol,
same parameters) passes for at least one of uvicorn's built-ins; 0 otherwise. A test that fails for the
built-ins too is an environment or suite problem, reported but not held against us.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
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
    """Download and extract uvicorn's sdist (once per version); return the source tree."""
    tree = CACHE / f"uvicorn-{version}"
    if (tree / "tests" / "protocols" / "test_websocket.py").exists():
        return tree
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps"]
        + [f"uvicorn=={version}", "-d", str(CACHE)],
        check=True,
    )
    with tarfile.open(CACHE / f"uvicorn-{version}.tar.gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"uvicorn-{version}/tests/")]
        members += [tar.getmember(f"uvicorn-{version}/pyproject.toml")]
        tar.extractall(CACHE, members=members, filter="data")
    return tree


def apply_patches(tree: Path) -> None:
    for name, old, new, why in PATCHES:
        path = tree / name
        text = path.read_text()
        if new in text:
            continue
        if text.count(old) < 1:
            raise SystemExit(f"uvicorn_suite: cannot apply patch to {name} ({why}): text not found")
        path.write_text(text.replace(old, new))


def run(tree: Path, junit: Path) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(REPO_ROOT)]))
    argv = [sys.executable, "-m", "pytest", "tests/protocols/test_websocket.py", "-q"]
    argv += ["-p", "no:cacheprovider", "-o", "addopts=-rfE --strict-markers", "--junitxml", str(junit)]
    return subprocess.run(argv, cwd=tree, env=env).returncode


def outcomes(junit: Path) -> dict[str, str]:
    """test id -> passed / failed / skipped."""
    result = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            result[name] = "failed"
        elif "skipped" in kinds:
            result[name] = "skipped"
        else:
            result[name] = "passed"
    return result


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
    junit = tree / "junit-websocket.xml"
    run(tree, junit)
    per_class: dict[str, Counter[str]] = defaultdict(Counter)
    by_test: dict[str, dict[str, str]] = defaultdict(dict)
    for test_id, outcome in outcomes(junit).items():
        cls, generic = split_class(test_id)
        per_class[cls or "(no class parameter)"][outcome] += 1
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
    lines += ["", "Patches to uvicorn's tests:"] + [f"- `{name}`: {why}" for name, _, _, why in PATCHES]
    ours_failed = sorted(t for t, o in by_test.items() if o.get(OURS) == "failed")
    lines += ["", f"Failed for {OURS}: {', '.join(ours_failed) or 'none'}"]
    lines += [f"Failed for {OURS} but passed for a built-in: {', '.join(held_against_us) or 'none'}"]
    report = "\n".join(lines)
    print("\n" + report)
    if a.results:
        a.results.write_text(report + "\n")
    return 1 if held_against_us else 0


if __name__ == "__main__":
    sys.exit(main())
