"""``python -m benchmarks.deflate_tuning``: its building blocks work (the full run takes ~a minute)."""

from __future__ import annotations

import pytest

from benchmarks import deflate_tuning


def test_json_messages_have_the_size_asked_for() -> None:
    for size in (16, 1024, 5000):
        assert len(deflate_tuning.json_message(size)) == size


@pytest.mark.parametrize("bits, no_context_takeover", [(15, False), (9, True)])
def test_exchange_compresses_both_ways(bits: int, no_context_takeover: bool) -> None:
    a, b = deflate_tuning.pair(6, 5, bits, no_context_takeover)
    message = deflate_tuning.json_message(1024)
    deflate_tuning.exchange(a, b, message)  # raises if either side fails to inflate what the other sent
    rsv, payload = a.encode(message, True, True, None)
    assert rsv and len(payload) < len(message) / 2  # JSON-like text compresses well


def test_small_messages_report_runs(capsys: pytest.CaptureFixture[str]) -> None:
    deflate_tuning.small_messages()
    assert "no_context_takeover" in capsys.readouterr().out
