"""Close frame payloads (RFC 6455 §5.5.1, §7.4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite import MAX_CLOSE_REASON, fit_close_reason
from wsproto_lite._close import build_close_payload, is_valid_close_code, parse_close_payload
from wsproto_lite._errors import LocalProtocolError, RemoteProtocolError

VALID = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID)
def test_valid_codes(code: int) -> None:
    assert is_valid_close_code(code)
    assert parse_close_payload(code.to_bytes(2, "big") + b"ok") == (code, "ok")


@pytest.mark.parametrize("code", INVALID)
def test_invalid_codes_are_protocol_errors(code: int) -> None:
    assert not is_valid_close_code(code)
    with pytest.raises(RemoteProtocolError) as info:
        parse_close_payload(code.to_bytes(2, "big"))
    assert info.value.code == 1002


def test_empty_payload_means_no_status() -> None:
    assert parse_close_payload(b"") == (1005, "")


def test_one_byte_payload_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_close_payload(b"\x03")
    assert info.value.code == 1002


def test_reason_must_be_utf8() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_close_payload(b"\x03\xe8\xff")
    assert info.value.code == 1007


def test_build() -> None:
    assert build_close_payload(1000, "bye") == b"\x03\xe8bye"
    assert build_close_payload(None, "") == b""
    assert build_close_payload(1005, "") == b""


@pytest.mark.parametrize(
    "code, reason", [(1005, "why"), (None, "why"), (1006, ""), (999, ""), (1000, "x" * 124)]
)
def test_build_refuses_what_may_not_be_sent(code: int | None, reason: str) -> None:
    with pytest.raises(LocalProtocolError):
        build_close_payload(code, reason)


def test_build_refuses_a_reason_utf8_cannot_encode() -> None:
    with pytest.raises(LocalProtocolError):
        build_close_payload(1000, "\ud800")  # a lone surrogate (json.loads makes them): not a LookupError


def test_fit_close_reason_cuts_on_a_character_boundary() -> None:
    assert MAX_CLOSE_REASON == 123  # §5.5: 125 bytes of payload, two of them the code
    assert fit_close_reason("bye") == "bye"
    assert fit_close_reason("x" * 123) == "x" * 123
    assert fit_close_reason("x" * 124) == "x" * 123
    assert fit_close_reason("Ж" * 71) == "Ж" * 61  # 142 bytes; the 62nd character would be cut in half
    assert fit_close_reason("x" + "€" * 60) == "x" + "€" * 40  # 1 + 3·40 = 121; one more is 124
    assert fit_close_reason("a\ud800b") == "a?b"
    assert fit_close_reason("Ж" * 10, limit=5) == "ЖЖ"


@given(st.text(max_size=200), st.integers(min_value=0, max_value=MAX_CLOSE_REASON))
def test_fit_close_reason_is_the_longest_prefix_that_fits(reason: str, limit: int) -> None:
    fitted = fit_close_reason(reason, limit)
    encodable = reason.encode("utf-8", "replace").decode("utf-8")  # lone surrogates as ?
    assert encodable.startswith(fitted)
    size = len(fitted.encode("utf-8"))
    assert size <= limit
    if fitted != encodable:  # cut: the next character would not fit
        assert size + len(encodable[len(fitted)].encode("utf-8")) > limit
    assert build_close_payload(4000, fit_close_reason(reason))[2:] == fit_close_reason(reason).encode()
