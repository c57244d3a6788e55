"""protocol.py: parsing untrusted frames, parameter accessors, frames out."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite.hub.protocol import (
    NO_ID,
    DisconnectCode,
    ErrorCode,
    HubError,
    Position,
    command_id_of,
    disconnect_push_frame,
    error_frame,
    get_bool,
    get_display_str,
    get_int,
    get_position,
    get_str,
    parse_command,
    pub_push_frame,
    publication_json,
    reply_frame,
)


def test_a_valid_command() -> None:
    cmd = parse_command('{"id": 3, "method": "publish", "params": {"channel": "c", "data": [1]}}')
    assert (cmd.id, cmd.method, cmd.params) == (3, "publish", {"channel": "c", "data": [1]})
    assert parse_command('{"id": 1, "method": "ping"}').params == {}
    assert parse_command('{"id": 1, "method": "ping", "params": null}').params == {}


@pytest.mark.parametrize(
    ("text", "cid", "code"),
    [
        ("", NO_ID, ErrorCode.BAD_REQUEST),
        ("nul", NO_ID, ErrorCode.BAD_REQUEST),
        ('{"id": 1, "method": "ping"} trailing', NO_ID, ErrorCode.BAD_REQUEST),
        ("[]", NO_ID, ErrorCode.BAD_REQUEST),
        ('{"id": 0, "method": "ping"}', NO_ID, ErrorCode.BAD_REQUEST),
        ('{"id": 9007199254740992, "method": "ping"}', NO_ID, ErrorCode.BAD_REQUEST),
        ('{"id": "1", "method": "ping"}', NO_ID, ErrorCode.BAD_REQUEST),
        ('{"id": 2}', 2, ErrorCode.BAD_REQUEST),
        ('{"id": 2, "method": "PING"}', 2, ErrorCode.METHOD_NOT_FOUND),
        ('{"id": 2, "method": "ping", "params": "x"}', 2, ErrorCode.BAD_REQUEST),
        ('{"id": 2, "method": "ping", "params": {"x": Infinity}}', NO_ID, ErrorCode.BAD_REQUEST),
        ('{"id": 2, "method": "publish", "params": {"data": "\\ud800"}}', 2, ErrorCode.BAD_REQUEST),
        ('{"id": 2, "method": "publish", "params": {"data": ["\\uDFFFx"]}}', 2, ErrorCode.BAD_REQUEST),
    ],
)
def test_refused_frames(text: str, cid: int, code: int) -> None:
    with pytest.raises(HubError) as info:
        parse_command(text)
    assert (command_id_of(info.value), info.value.code) == (cid, code)


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_hub_error(text: str) -> None:
    try:
        parse_command(text)
    except HubError as exc:
        assert exc.code in (ErrorCode.BAD_REQUEST, ErrorCode.METHOD_NOT_FOUND)


# strings around the surrogate block, lone surrogates included: JSON escapes them as \udXXX
_near_surrogates = st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010, exclude_categories=()))


@given(st.lists(_near_surrogates, max_size=4))
def test_a_command_never_holds_a_string_utf8_cannot_encode(strings: list[str]) -> None:
    text = json.dumps({"id": 1, "method": "publish", "params": {"channel": "c", "data": strings}})
    try:
        command = parse_command(text)
    except HubError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST
        assert any(0xD800 <= ord(c) <= 0xDFFF for s in strings for c in s)
        return
    json.dumps(command.params, ensure_ascii=False).encode("utf-8")  # every frame carrying it can be sent


def test_an_escaped_surrogate_pair_is_one_character_and_passes() -> None:
    command = parse_command('{"id": 1, "method": "publish", "params": {"data": "\\ud83d\\ude00 \\\\ud800"}}')
    assert command.params["data"] == "\U0001f600 \\ud800"  # an emoji; an escaped backslash, not an escape


def test_accessors() -> None:
    params = {"s": "x", "n": 5, "b": True, "p": {"epoch": "e", "offset": 2}, "bad": 1.5, "t": True}
    assert get_str(params, "s") == "x" and get_str(params, "missing", required=False) == ""
    assert get_int(params, "n", 0) == 5 and get_int(params, "missing", 7) == 7
    assert get_bool(params, "b") is True and get_bool(params, "missing") is False
    assert get_position(params, "p") == Position("e", 2) and get_position(params, "missing") is None
    for call in (
        lambda: get_str(params, "n"),
        lambda: get_str({"s": "x" * 10}, "s", max_length=5),
        lambda: get_int(params, "bad", 0),
        lambda: get_int(params, "t", 0),  # a bool is not an integer here
        lambda: get_int(params, "n", 0, maximum=4),
        lambda: get_bool(params, "n"),
        lambda: get_position(params, "s"),
        lambda: get_position({"p": {"epoch": 1, "offset": 2}}, "p"),
        lambda: get_position({"p": {"epoch": "e", "offset": -1}}, "p"),
    ):
        with pytest.raises(HubError) as info:
            call()
        assert info.value.code == ErrorCode.BAD_REQUEST


#: What a presence name must never carry: controls, bidirectional overrides and isolates, invisible marks.
_HIDDEN = (
    "\x00\x07\x1b\x7f\x85\x9b"  # C0, DEL, C1 (NEL, CSI)
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # embeddings, overrides, isolates
    "\u200e\u200f\u061c\u200b\u2060\ufeff\u00ad\U000e0041"  # marks, zero widths, soft hyphen, tag
    "\u2028\u2029\ud800"  # line/paragraph separators, a lone surrogate (from a JSON escape)
)


@pytest.mark.parametrize("char", list(_HIDDEN), ids=[f"U+{ord(c):04X}" for c in _HIDDEN])
def test_display_strings_refuse_controls_and_bidi_overrides(char: str) -> None:
    with pytest.raises(HubError) as info:
        get_display_str({"name": f"gnp{char}.exe"}, "name", max_length=64)
    assert info.value.code == ErrorCode.BAD_REQUEST


def test_display_strings_keep_every_script_and_emoji() -> None:
    for name in ("ann", "Zoë", "Łódź", "عائشة", "שלום", "李小龙", "👩\u200d💻", "🇫🇷", "a b", ""):
        assert get_display_str({"name": name}, "name", max_length=64) == name
    assert get_display_str({}, "name", max_length=64) == ""


@given(st.text(alphabet=st.characters(categories=("L", "M", "N", "P", "S", "Zs")), max_size=64))
def test_visible_text_passes(name: str) -> None:
    assert get_display_str({"name": name}, "name", max_length=64) == name


@given(st.text(max_size=30), st.sampled_from(_HIDDEN), st.text(max_size=30))
def test_a_hidden_character_anywhere_is_refused(before: str, char: str, after: str) -> None:
    with pytest.raises(HubError):
        get_display_str({"name": before + char + after}, "name", max_length=64)


def test_frames_are_the_contracts_json() -> None:
    assert json.loads(reply_frame(4, {"a": "é"})) == {"id": 4, "result": {"a": "é"}}
    assert json.loads(error_frame(4, HubError(111, "slow down", True))) == {
        "id": 4,
        "error": {"code": 111, "message": "slow down", "temporary": True},
    }
    pub = publication_json("chat:x", 3, '{"t":1}', '{"client":"c","user":"u"}')
    assert json.loads(pub) == {
        "channel": "chat:x",
        "offset": 3,
        "data": {"t": 1},
        "info": {"client": "c", "user": "u"},
    }
    assert json.loads(publication_json("c", None, "null", None)) == {"channel": "c", "data": None}
    assert json.loads(pub_push_frame(pub)) == {"push": "pub", **json.loads(pub)}
    assert json.loads(pub_push_frame(pub, "chat:*"))["pattern"] == "chat:*"
    assert json.loads(disconnect_push_frame(DisconnectCode.SLOW, "slow"))["reconnect"] is True
    assert json.loads(disconnect_push_frame(DisconnectCode.CONNECT_TIMEOUT, "late"))["reconnect"] is False
