"""The protobuf benchmarks on a tiny scale: both run end to end and print their table."""

from __future__ import annotations

import pytest

from benchmarks import hub_protobuf, pb_codec


def test_pb_codec_runs_and_checks_both_codecs_agree(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("google.protobuf")
    assert pb_codec.main(["--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count(": pb_wire |") == 2 and out.count(": protobuf |") == 2


def test_hub_protobuf_runs_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert hub_protobuf.main(["--subscribers", "4", "--publications", "10", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert all(f"| {name} |" in out for name in hub_protobuf.SCENARIOS)
