"""Tests for the harness pieces that need no wstest: progress parsing, specs, CLI options."""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # repo root: conformance/

from conformance import procs, spec  # noqa: E402
from conformance.cli import build_parser  # noqa: E402
from conformance.progress import Progress, Reporter  # noqa: E402
from conformance.runner import RunOptions  # noqa: E402

WSTEST_OUT = """\
Autobahn Fuzzing WebSocket Client (Autobahn Testsuite Version 25.10.1 / Autobahn Version 0.10.9)
Ok, will run 3 test cases against 1 servers
Cases = ['1.1.1', '3.2', '9.1.1']
Running test case ID 1.1.1 for agent wsproto-lite from peer tcp4:127.0.0.1:9001
@@case-result 1.1.1 OK OK 2
Running test case ID 3.2 for agent wsproto-lite from peer tcp4:127.0.0.1:9001
@@case-result 3.2 NON-STRICT OK 1
Running test case ID 9.1.1 for agent wsproto-lite from peer tcp4:127.0.0.1:9001
@@case-result 9.1.1 INFORMATIONAL INFORMATIONAL 4
"""


def test_progress_parses_wstest_output() -> None:
    p = Progress()
    for line in WSTEST_OUT.splitlines(keepends=True):
        p.feed(line)
    assert (p.total, p.started, p.finished, p.current) == (3, 3, 3, "9.1.1")
    assert p.failures == ["3.2 NON-STRICT/OK"]


def test_reporter_plain_lines() -> None:
    out = io.StringIO()
    r = Reporter("server", out=out, tty=False)
    for line in WSTEST_OUT.splitlines():
        r.feed(line)
    r.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[server] 3 cases to run"
    assert lines[1].startswith("[server] case 1 of 3 (1.1.1)")
    assert "[server]   not strict: 3.2 NON-STRICT/OK" in lines
    assert "\r" not in out.getvalue()


def test_reporter_tty_single_line() -> None:
    out = io.StringIO()
    r = Reporter("client", out=out, tty=True, tick=0)
    for line in WSTEST_OUT.splitlines():
        r.feed(line)
    r.close()
    text = out.getvalue()
    assert "\r[client] case 3 of 3 (9.1.1)" in text and "failures: 1" in text
    assert text.count("\n") == 2  # the one failure line + the final newline


def test_specs() -> None:
    fc = spec.fuzzingclient_spec("ws://127.0.0.1:1", "a", Path("/tmp/o"), [], ["12.*"])
    assert fc["servers"] == [{"agent": "a", "url": "ws://127.0.0.1:1"}]
    assert fc["cases"] == ["*"] and fc["exclude-cases"] == ["12.*"]
    assert fc["options"] == {"failByDrop": False}
    fs = spec.fuzzingserver_spec("ws://127.0.0.1:2", Path("/tmp/o"), ["1.*"], [])
    assert fs["url"] == "ws://127.0.0.1:2" and fs["cases"] == ["1.*"]
    assert spec.split_patterns(" 1.*, 5.* ,") == ["1.*", "5.*"]


def test_effective_exclude() -> None:
    assert RunOptions(exclude=["2.*"]).effective_exclude() == ["2.*"]
    no_comp = RunOptions(compression=False, ci=True).effective_exclude()
    assert "12.*" in no_comp and "13.*" in no_comp and "12.2.10" in no_comp
    ci = RunOptions(ci=True).effective_exclude()
    assert len(ci) == 12 * 9 and "13.7.18" in ci and "12.1.7" not in ci and "12.1.11" not in ci
    assert not any("*" in p for p in ci)  # wstest wildcards match prefixes


def test_cli_options() -> None:
    a = build_parser().parse_args(["server", "--cases", "1.*,5.*", "--no-compression", "--port", "9"])
    assert (a.role, a.cases, a.compression, a.port, a.impl) == ("server", "1.*,5.*", False, 9, "wsproto-lite")


def test_free_port_is_bindable() -> None:
    port = procs.free_port()
    assert 0 < port < 65536 and not procs.port_accepts(port)
