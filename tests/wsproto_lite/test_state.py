"""The life-cycle table (RFC 6455 §4, §7)."""

from __future__ import annotations

import pytest

from wsproto_lite._state import PUBLIC_STATE, TRANSITIONS, ConnectionState, Phase, Trigger, next_state


def test_every_phase_has_a_public_state() -> None:
    assert set(PUBLIC_STATE) == set(Phase)


def test_closed_is_reachable_from_everywhere_and_final() -> None:
    for phase in Phase:
        assert next_state(phase, Trigger.TRANSPORT_CLOSED) is Phase.CLOSED
    assert {trigger for (phase, trigger) in TRANSITIONS if phase is Phase.CLOSED} == {
        Trigger.TRANSPORT_CLOSED
    }


def test_closing_handshake_from_either_side() -> None:
    assert next_state(next_state(Phase.OPEN, Trigger.SEND_CLOSE), Trigger.RECEIVE_CLOSE) is Phase.CLOSED
    assert next_state(next_state(Phase.OPEN, Trigger.RECEIVE_CLOSE), Trigger.SEND_CLOSE) is Phase.CLOSED
    assert PUBLIC_STATE[Phase.CLOSE_SENT] is PUBLIC_STATE[Phase.CLOSE_RECEIVED] is ConnectionState.CLOSING


@pytest.mark.parametrize(
    "phase, trigger",
    [
        (Phase.CONNECTING, Trigger.SEND_CLOSE),
        (Phase.OPEN, Trigger.HANDSHAKE_DONE),
        (Phase.CLOSE_SENT, Trigger.SEND_CLOSE),
    ],
)
def test_missing_transitions_are_bugs(phase: Phase, trigger: Trigger) -> None:
    with pytest.raises(RuntimeError):
        next_state(phase, trigger)
