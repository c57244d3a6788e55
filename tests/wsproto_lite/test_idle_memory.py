"""What an open, idle core connection keeps (issue 22): no empty deques, no handshake leftovers, not the
last chunk it read, header names and common header lines shared between connections."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite import Request, ServerConnection, TextMessage
from wsproto_lite._config import Config
from wsproto_lite._http import _COMMON_LINES, _parse_header_line, parse_request_head
from wsproto_lite._reader import MessageReader

from .test_connection import REQUEST
from .wire import frame, text

CONNECTIONS = 200


@pytest.fixture
def traced() -> Iterator[None]:
    gc.disable()  # reference counting alone must free what is let go of
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()
        gc.enable()


def open_idle(config: Config) -> ServerConnection:
    """An OPEN server connection that received one message (in the request's chunk) and handed it out."""
    conn = ServerConnection(config)
    conn.receive_data(REQUEST + text("hello"))
    request = conn.next_event()
    assert isinstance(request, Request)
    conn.accept()
    conn.data_to_send()
    assert conn.next_event() == TextMessage("hello")
    assert conn.next_event() is None
    return conn


def test_an_open_idle_core_connection_is_small(traced: None) -> None:
    config = Config()
    open_idle(config)  # warm-up: caches, interned names
    before = tracemalloc.get_traced_memory()[0]
    held = [open_idle(config) for _ in range(CONNECTIONS)]
    per_connection = (tracemalloc.get_traced_memory()[0] - before) / CONNECTIONS
    # ~1.0 KB with CPython 3.11 (the request's 9 header lines included); before issue 22: 3.3 KB
    # (three empty deques of 760 bytes each, the handshake's lists, fresh strings for every header).
    assert per_connection < 1500, f"{per_connection:.0f} bytes per open idle core connection"
    del held


def test_the_reader_lets_go_of_the_last_chunk_once_parsed(traced: None) -> None:
    reader = MessageReader(Config(), expect_masked=True)
    chunk = frame(0x2, bytes(60_000))  # one whole message in one read
    reader.feed(chunk)
    del chunk
    before = tracemalloc.get_traced_memory()[0]
    event = reader.next_event()
    assert event is not None
    del event  # the application is done with the message
    assert reader.next_event() is None
    assert reader.buffered == 0
    # the 60 KB chunk is gone with the message: only a little bookkeeping is left
    assert tracemalloc.get_traced_memory()[0] - before < -50_000


def test_a_partial_header_is_kept() -> None:
    reader = MessageReader(Config(), expect_masked=True)
    whole = text("x" * 300)
    for start, end in ((0, 1), (1, 3), (3, 6)):  # inside the header: not parsed yet, so kept
        reader.feed(whole[start:end])
        assert reader.next_event() is None
        assert reader.buffered == end
    reader.feed(whole[6:])
    assert reader.next_event() == TextMessage("x" * 300)


def test_common_header_lines_parse_as_the_general_parser_does() -> None:
    for line, pair in _COMMON_LINES.items():
        assert _parse_header_line(line) == pair


def test_header_names_and_common_lines_are_shared_between_requests() -> None:
    head = REQUEST.split(b"\r\n\r\n")[0]
    first = parse_request_head(head, 100)[3]
    second = parse_request_head(head, 100)[3]
    assert first == second
    names = {name for name, _ in first}
    assert {"Host", "Upgrade", "Connection", "Origin", "Cookie"} <= names
    assert all(a[0] is b[0] for a, b in zip(first, second, strict=True))  # every name: one object
    shared = [a for a, b in zip(first, second, strict=True) if a is b]  # whole lines: one tuple
    assert ("Upgrade", "websocket") in shared and ("Sec-WebSocket-Version", "13") in shared


@given(
    st.sampled_from(sorted(_COMMON_LINES)),
    st.sampled_from([b"", b" ", b"\t", b"  "]),
    st.sampled_from([b"", b" ", b"\t"]),
)
def test_spacing_around_a_common_value_parses_the_same(line: bytes, before: bytes, after: bytes) -> None:
    name, _, value = line.partition(b": ")
    variant = name + b":" + before + value + after
    head = b"GET / HTTP/1.1\r\n" + variant
    assert parse_request_head(head, 10)[3] == (_COMMON_LINES[line],)
