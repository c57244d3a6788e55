"""Outgoing frames: masking (§5.3) and fragmentation (§5.4)."""

from __future__ import annotations

import pytest

from wsproto_lite._errors import LocalProtocolError
from wsproto_lite._writer import FrameWriter

from .wire import frame


def test_server_frames_are_not_masked_and_fragments_continue() -> None:
    writer = FrameWriter(None)
    writer.data(0x1, b"a", fin=False, compress=None)
    writer.data(0x1, b"b", fin=False, compress=None)
    writer.data(0x1, b"", fin=True, compress=None)
    assert b"".join(writer.out) == frame(0x1, b"a", fin=False, mask=None) + frame(
        0x0, b"b", fin=False, mask=None
    ) + frame(0x0, b"", mask=None)


def test_client_frames_use_a_fresh_key_each() -> None:
    keys = iter([b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"])
    writer = FrameWriter(lambda n: next(keys))
    writer.frame(0x2, b"abc")
    writer.frame(0x9, b"")
    assert b"".join(writer.out) == frame(0x2, b"abc", mask=b"\x01\x02\x03\x04") + frame(
        0x9, b"", mask=b"\x05\x06\x07\x08"
    )


def test_one_fragmented_message_at_a_time() -> None:
    writer = FrameWriter(None)
    writer.data(0x2, b"a", fin=False, compress=None)
    with pytest.raises(LocalProtocolError):
        writer.data(0x1, b"b", fin=True, compress=None)
