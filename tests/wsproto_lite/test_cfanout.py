"""The fan-out loop ``_cfanout.send_many`` against its pure-Python reference ``send_many_py``: on the same
kinds of sockets (a reading peer, a peer whose buffers are full, a closed peer, a closed descriptor) both
report the same shortfalls and put the same bytes on the wire."""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsproto_lite.server import fanout

SendMany = Callable[[list[int], bytes], list[tuple[int, int]]]

compiled = fanout._load()
IMPLEMENTATIONS: list[SendMany] = [fanout.send_many_py] + ([compiled] if compiled is not None else [])
compiled_each = fanout._load_each()
EACH = [fanout.send_each_py] + ([compiled_each] if compiled_each is not None else [])


def _pair(stack: ExitStack) -> tuple[socket.socket, socket.socket]:
    ours, peer = socket.socketpair()
    stack.callback(ours.close)
    stack.callback(peer.close)
    ours.setblocking(False)
    peer.setblocking(False)
    return ours, peer


def _fill(sock: socket.socket) -> None:
    """Send until the kernel takes nothing more."""
    chunk = b"\0" * 65536
    while True:
        try:
            sock.send(chunk)
        except BlockingIOError:
            return


def _drain(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def run(send: SendMany, kinds: list[str], data: bytes) -> tuple[list[tuple[int, int]], list[bytes]]:
    """Sockets of ``kinds``; ``send`` writes ``data`` to all; its answer and what each reading peer got."""
    with ExitStack() as stack:
        fds: list[int] = []
        peers: list[socket.socket | None] = []
        for kind in kinds:
            ours, peer = _pair(stack)
            if kind == "full":
                _fill(ours)
            elif kind == "closed":
                peer.close()
            fds.append(ours.fileno())
            peers.append(peer if kind == "reader" else None)
        answer = send(fds, data)
        return answer, [_drain(p) for p in peers if p is not None]


@given(
    kinds=st.lists(st.sampled_from(["reader", "full", "closed"]), max_size=8),
    data=st.binary(max_size=4096),
)
@settings(max_examples=40, deadline=None)
def test_the_loop_and_its_reference_agree_on_every_mix_of_sockets(kinds: list[str], data: bytes) -> None:
    answers = [run(send, kinds, data) for send in IMPLEMENTATIONS]
    shortfalls, received = answers[0]
    assert all(answer == answers[0] for answer in answers)
    assert received == [data] * kinds.count("reader")
    # a closed peer fails even an empty send (EPIPE); a full one takes an empty send whole
    expected = {i: kind for i, kind in enumerate(kinds) if kind == "closed" or (kind == "full" and data)}
    assert {i for i, _ in shortfalls} == set(expected)
    for index, sent in shortfalls:
        assert sent == (0 if expected[index] == "full" else -errno.EPIPE)


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda f: f.__module__)
def send(request: pytest.FixtureRequest) -> Iterator[SendMany]:
    yield request.param


def test_a_closed_descriptor_is_an_ebadf_shortfall_and_nothing_else_is_touched(send: SendMany) -> None:
    with ExitStack() as stack:
        ours, peer = _pair(stack)
        spare = os.dup(ours.fileno())
        os.close(spare)  # a number no file is open under
        assert send([spare, ours.fileno()], b"frame") == [(0, -errno.EBADF)]
        assert _drain(peer) == b"frame"


def test_no_sockets_no_answer(send: SendMany) -> None:
    assert send([], b"frame") == []


@pytest.mark.skipif(compiled is None, reason="the C loop is not built (or WSPROTO_LITE_NO_SPEEDUPS=1)")
def test_bad_arguments_raise_instead_of_writing() -> None:
    assert compiled is not None
    with ExitStack() as stack:
        ours, peer = _pair(stack)
        for fds, error in (([-1], ValueError), (["3"], TypeError), ([2**40], OverflowError)):
            with pytest.raises((error, ValueError)):
                compiled(fds, b"frame")  # type: ignore[list-item]
        with pytest.raises(TypeError):
            compiled((ours.fileno(),), b"frame")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            compiled([ours.fileno()], "text")  # type: ignore[arg-type]
        assert _drain(peer) == b""


def run_each(
    send: Callable[[list[int], list[bytes]], list[tuple[int, int]]], kinds: list[str], datas: list[bytes]
) -> tuple[list[tuple[int, int]], list[bytes]]:
    """Like :func:`run` with one data per socket (``send_each``)."""
    with ExitStack() as stack:
        fds: list[int] = []
        peers: list[socket.socket | None] = []
        for kind in kinds:
            ours, peer = _pair(stack)
            if kind == "full":
                _fill(ours)
            elif kind == "closed":
                peer.close()
            fds.append(ours.fileno())
            peers.append(peer if kind == "reader" else None)
        answer = send(fds, datas)
        return answer, [_drain(p) for p in peers if p is not None]


@given(
    pairs=st.lists(
        st.tuples(st.sampled_from(["reader", "full", "closed"]), st.binary(max_size=4096)), max_size=8
    )
)
@settings(max_examples=40, deadline=None)
def test_send_each_and_its_reference_agree_with_one_data_per_socket(pairs: list[tuple[str, bytes]]) -> None:
    kinds = [kind for kind, _ in pairs]
    datas = [data for _, data in pairs]
    answers = [run_each(send, kinds, datas) for send in EACH]
    assert all(answer == answers[0] for answer in answers)
    shortfalls, received = answers[0]
    assert received == [data for kind, data in pairs if kind == "reader"]
    failing = {i for i, (kind, data) in enumerate(pairs) if kind == "closed" or (kind == "full" and data)}
    assert {i for i, _ in shortfalls} == failing


@pytest.mark.skipif(compiled_each is None, reason="the C loop is not built (or WSPROTO_LITE_NO_SPEEDUPS=1)")
def test_send_each_wants_one_bytes_per_descriptor() -> None:
    assert compiled_each is not None
    with ExitStack() as stack:
        ours, peer = _pair(stack)
        with pytest.raises(ValueError):
            compiled_each([ours.fileno()], [b"a", b"b"])
        with pytest.raises(TypeError):
            compiled_each([ours.fileno()], [memoryview(b"a")])  # type: ignore[list-item]
        assert _drain(peer) == b""


@pytest.mark.skipif(compiled is None, reason="the C loop is not built (or WSPROTO_LITE_NO_SPEEDUPS=1)")
def test_a_full_socket_in_blocking_mode_is_an_eagain_shortfall_not_a_wait() -> None:
    """MSG_DONTWAIT: the loop never waits for a socket, whatever its mode (the transports make theirs
    non-blocking; one that is not must not stall every other connection of the fan-out)."""
    assert compiled is not None
    with ExitStack() as stack:
        ours, peer = _pair(stack)
        _fill(ours)
        ours.setblocking(True)
        answer: list[list[tuple[int, int]]] = []
        worker = threading.Thread(target=lambda: answer.append(compiled([ours.fileno()], b"x" * 100)))
        worker.daemon = True
        worker.start()
        worker.join(10)
        if worker.is_alive():
            peer.close()  # lets a blocked send() fail, so the thread ends
            worker.join(10)
        assert answer == [[(0, 0)]]
