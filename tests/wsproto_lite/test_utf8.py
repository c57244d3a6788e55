"""Incremental UTF-8 validation (RFC 6455 §8.1, RFC 3629)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite._errors import RemoteProtocolError
from wsproto_lite._utf8 import Utf8Decoder, decode_utf8


@given(st.text(), st.data())
def test_any_split_of_valid_text_decodes(text: str, data: st.DataObject) -> None:
    raw = text.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=5)))
    decoder = Utf8Decoder()
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(decoder.decode(raw[start:cut]))
        start = cut
    pieces.append(decoder.decode(raw[start:], final=True))
    assert "".join(pieces) == text


@pytest.mark.parametrize(
    "prefix, bad",
    [
        (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", b"\xf4\x90"),  # beyond U+10FFFF (Autobahn 6.4.1)
        (b"abc", b"\xc0"),  # overlong lead byte
        (b"abc", b"\x80"),  # lone continuation byte
        (b"", b"\xe0\x80"),  # overlong 3-byte form
        (b"", b"\xed\xa0"),  # UTF-16 surrogate: CPython holds it back, we do not
        (b"x", b"\xf5"),  # never a valid byte
    ],
)
def test_fails_at_the_first_invalid_byte(prefix: bytes, bad: bytes) -> None:
    decoder = Utf8Decoder()
    decoder.decode(prefix + bad[:-1])
    with pytest.raises(RemoteProtocolError) as info:
        decoder.decode(bad[-1:])  # the rest of the message has not arrived: still an error now
    assert info.value.code == 1007


def test_truncated_sequence_fails_only_at_the_end() -> None:
    decoder = Utf8Decoder()
    assert decoder.decode(b"a\xe2\x82") == "a"
    with pytest.raises(RemoteProtocolError):
        decoder.decode(b"", final=True)


def test_decode_whole_payload() -> None:
    assert decode_utf8("κόσμε".encode()) == "κόσμε"
    with pytest.raises(RemoteProtocolError) as info:
        decode_utf8(b"\xed\xa0\x80")
    assert info.value.code == 1007
