"""Tests for conformance.summary on a small synthetic index.json."""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # repo root: conformance/

from conformance import summary  # noqa: E402


def _case(behavior: str = "OK", close: str = "OK", duration: int = 1) -> dict[str, object]:
    return {
        "behavior": behavior,
        "behaviorClose": close,
        "duration": duration,
        "remoteCloseCode": 1000,
        "reportfile": "x.json",
    }


CASES = {
    "1.1.1": _case(),
    "1.1.2": _case(),
    "2.10": _case(),
    "2.9": _case(),
    "3.2": _case("NON-STRICT"),
    "6.4.1": _case("NON-STRICT", "OK"),
    "7.1.6": _case("INFORMATIONAL", "INFORMATIONAL"),
    "7.13.1": _case("INFORMATIONAL", "OK"),
    "9.1.1": _case(duration=5),
    "9.10.1": _case(duration=7),
    "9.2.1": _case("FAILED", "OK", duration=3000),
    "12.1.1": _case("UNIMPLEMENTED", "UNIMPLEMENTED"),
    "10.1.1": _case("OK", "FAILED"),
}


def write_index(tmp_path: Path, cases: dict, agent: str = "wsproto-lite") -> Path:
    outdir = tmp_path / "servers"
    outdir.mkdir()
    (outdir / "index.json").write_text(json.dumps({agent: cases}))
    return outdir


def test_case_key_is_numeric() -> None:
    assert sorted(["9.10.1", "9.2.1", "10.1.1", "9.1.1"], key=summary.case_key) == [
        "9.1.1",
        "9.2.1",
        "9.10.1",
        "10.1.1",
    ]


def test_group_counts() -> None:
    s = summary.summarize(CASES, "server", "wsproto-lite")
    assert list(s.groups) == ["1.*", "2.*", "3.*", "6.*", "7.*", "9.*", "10.*", "12.*"]
    assert s.groups["1.*"]["OK"] == 2 and s.groups["1.*"]["cases"] == 2
    assert s.groups["7.*"]["INFORMATIONAL"] == 2
    assert s.groups["9.*"]["FAILED"] == 1 and s.groups["9.*"]["OK"] == 2
    assert s.groups["12.*"]["UNIMPLEMENTED"] == 1 and s.groups["12.*"]["close-not-ok"] == 1
    assert s.groups["10.*"]["close-not-ok"] == 1
    assert s.total == len(CASES)


def test_not_ok_list_and_strictness() -> None:
    s = summary.summarize(CASES, "server", "wsproto-lite")
    ids = [c for c, _, _ in s.not_ok]
    assert ids == ["3.2", "6.4.1", "7.1.6", "7.13.1", "9.2.1", "10.1.1", "12.1.1"]
    # INFORMATIONAL with close OK/INFORMATIONAL is strict; the rest are not.
    assert s.strict_failures == 5
    assert not s.passed


def test_durations_of_9() -> None:
    s = summary.summarize(CASES, "server", "a")
    assert s.durations_9 == [("9.1.1", 5), ("9.2.1", 3000), ("9.10.1", 7)]


def test_all_ok_or_informational_passes() -> None:
    cases = {
        "1.1.1": _case(),
        "7.1.6": _case("INFORMATIONAL", "INFORMATIONAL"),
        "7.13.1": _case("INFORMATIONAL", "OK"),
    }
    assert summary.summarize(cases, "server", "a").passed
    assert not summary.summarize({}, "server", "a").passed


def test_table_has_total_row() -> None:
    table = summary.format_table(summary.summarize(CASES, "server", "a"))
    assert "| 9.* | 3 | 2 | 0 | 0 | 0 | 1 | 0 | 3.0 |" in table
    assert "| **total** | 13 | 7 | 2 | 2 | 1 | 1 | 2 | 3.0 |" in table


def test_report_exit_codes(tmp_path: Path) -> None:
    outdir = write_index(tmp_path, CASES)
    assert summary.report(outdir, "server", out=io.StringIO()) == 1
    (tmp_path / "b").mkdir()
    ok = write_index(tmp_path / "b", {"1.1.1": _case()})
    assert summary.report(ok, "server", "wsproto-lite", out=io.StringIO()) == 0
    assert summary.report(tmp_path / "missing", "server", out=io.StringIO()) == 2
    assert summary.report(ok, "server", "other-agent", out=io.StringIO()) == 2


def test_pick_agent_needs_name_when_ambiguous() -> None:
    with pytest.raises(KeyError):
        summary.pick_agent({"a": {}, "b": {}}, None)
    assert summary.pick_agent({"a": {}}, None) == "a"


def test_results_md_keeps_other_role(tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    when = dt.datetime(2026, 11, 25, 21, 0, tzinfo=dt.UTC)
    summary.update_results_md(md, "server", "SERVER TABLE v1", when)
    text = md.read_text()
    assert "SERVER TABLE v1" in text and "Not run yet." in text and "2026-11-25" in text
    summary.update_results_md(md, "client", "CLIENT TABLE", when)
    summary.update_results_md(md, "server", "SERVER TABLE v2", when)
    text = md.read_text()
    assert "SERVER TABLE v2" in text and "CLIENT TABLE" in text
    assert "v1" not in text and "Not run yet." not in text
    assert text.index("Server role") < text.index("Client role")


def test_cli_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outdir = write_index(tmp_path, {"1.1.1": _case(), "5.15": _case("NON-STRICT")})
    md = tmp_path / "R.md"
    assert summary.main([str(outdir), "--results-md", str(md)]) == 1
    out = capsys.readouterr().out
    assert "5.15: NON-STRICT / OK" in out and "Server role" in out
    assert "5.15: NON-STRICT / OK" in md.read_text()


def test_incomplete_run_is_status_2(tmp_path: Path) -> None:
    outdir = write_index(tmp_path, {"1.1.1": _case()})
    out = io.StringIO()
    assert summary.report(outdir, "server", expected=3, out=out) == 2
    assert "INCOMPLETE RUN (1 of 3 cases reported)" in out.getvalue()
    assert summary.report(outdir, "server", incomplete="wstest timed out", out=io.StringIO()) == 2
    assert summary.report(outdir, "server", expected=1, out=io.StringIO()) == 0
