"""The life-cycle table (RFC 6455 §4, §7) and what follows from it."""

from __future__ import annotations

import itertools

import pytest

from wsproto_lite._state import (
    PUBLIC_STATE,
    RECEIVING,
    SENDING,
    TRANSITIONS,
    ConnectionState,
    Phase,
    Trigger,
    close_expected,
    next_state,
    should_close_transport,
)


def test_every_phase_has_a_public_state() -> None:
    assert set(PUBLIC_STATE) == set(Phase)


def test_closed_is_reachable_from_everywhere_and_final() -> None:
    for phase in Phase:
        assert next_state(phase, Trigger.TRANSPORT_CLOSED) is Phase.CLOSED
    assert {trigger for (phase, trigger) in TRANSITIONS if phase is Phase.CLOSED} == {
        Trigger.TRANSPORT_CLOSED
    }


def test_closing_handshake_from_either_side() -> None:
    # We close first: CLOSING until the peer's close arrives (§7.1.3).
    assert next_state(next_state(Phase.OPEN, Trigger.SEND_CLOSE), Trigger.RECEIVE_CLOSE) is Phase.CLOSED
    assert PUBLIC_STATE[Phase.CLOSE_SENT] is ConnectionState.CLOSING
    # The peer closes first: the core replies in the same step (§5.5.1), so the handshake is complete.
    assert next_state(Phase.OPEN, Trigger.RECEIVE_CLOSE) is Phase.CLOSED


def test_every_phase_is_reachable_from_connecting() -> None:
    reached, frontier = {Phase.CONNECTING}, [Phase.CONNECTING]
    while frontier:
        phase = frontier.pop()
        for (source, _), target in TRANSITIONS.items():
            if source is phase and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(Phase)


def test_what_each_phase_allows() -> None:
    # §5.5.1: nothing after our close; §4.1: nothing before the handshake ends.
    assert SENDING == {Phase.OPEN}
    # §7.1.2: after our close the peer may still send data until its own close.
    assert RECEIVING == {Phase.OPEN, Phase.CLOSE_SENT}


@pytest.mark.parametrize("is_server, clean, eof", list(itertools.product([True, False], repeat=3)))
def test_transport_closes_only_when_closed(is_server: bool, clean: bool, eof: bool) -> None:
    for phase in Phase:
        closing = should_close_transport(phase, is_server=is_server, clean=clean, eof=eof)
        waiting = close_expected(phase, is_server=is_server, clean=clean, eof=eof)
        if phase is not Phase.CLOSED:
            assert not closing and waiting is (phase is Phase.CLOSE_SENT)
        else:
            # §7.1.1: the server closes TCP first; a clean client waits for it (or its EOF)
            assert closing is (is_server or eof or not clean)
            assert waiting is not closing


@pytest.mark.parametrize(
    "phase, trigger",
    [
        (Phase.CONNECTING, Trigger.SEND_CLOSE),
        (Phase.CONNECTING, Trigger.FAIL),
        (Phase.OPEN, Trigger.HANDSHAKE_DONE),
        (Phase.CLOSE_SENT, Trigger.SEND_CLOSE),
        (Phase.CLOSED, Trigger.SEND_CLOSE),
    ],
)
def test_missing_transitions_are_bugs(phase: Phase, trigger: Trigger) -> None:
    with pytest.raises(RuntimeError):
        next_state(phase, trigger)
