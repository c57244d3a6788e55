"""protocol.py: parsing untrusted frames, parameter accessors, frames out."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite.hub.protocol import (
    MAX_BATCH,
    PONG,
    SEND,
    BadFrame,
    Command,
    DisconnectCode,
    ErrorCode,
    HubError,
    Position,
    UnsubscribeCode,
    error_frame,
    get_bool,
    get_display_str,
    get_int,
    get_position,
    get_str,
    parse_frame,
    presence_push_frame,
    pub_push_frame,
    publication_json,
    reply_frame,
    unsubscribe_push_frame,
)


def parse_one(text: str) -> Command:
    (command,) = parse_frame(text)
    assert isinstance(command, Command), command
    return command


def test_a_valid_command() -> None:
    cmd = parse_one('{"id": 3, "publish": {"channel": "c", "data": [1]}}')
    assert (cmd.id, cmd.method, cmd.params) == (3, "publish", {"channel": "c", "data": [1]})
    assert parse_one('{"id": 1, "ping": {}}').params == {}
    assert parse_one('{"id": 1, "presence": null}').params == {}


def test_a_frame_batches_commands_separated_by_newlines() -> None:
    """centrifuge-js sends connect and every pending subscribe in one frame (protocol/decode.go)."""
    frame = '{"connect":{"name":"js"},"id":1}\n{"subscribe":{"channel":"chat:lobby","flag":1},"id":2}'
    assert [(c.id, c.method) for c in parse_frame(frame)] == [(1, "connect"), (2, "subscribe")]  # type: ignore[union-attr]
    assert len(parse_frame(frame + "\n")) == 2  # one trailing newline is allowed


def test_pong_and_send_have_no_id() -> None:
    assert parse_one("{}") == Command(0, PONG, {})
    assert parse_one('{"send": {"data": 1}}').method == SEND


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nul",
        '{"id": 1, "ping": {}} trailing',
        "[]",
        '{"ping": {}}',  # no id, not a send: a reply would need an id the client did not send
        '{"id": 4294967296, "ping": {}}',
        '{"id": "1", "ping": {}}',
        '{"id": -1, "ping": {}}',
        '{"id": 2, "ping": {"x": Infinity}}',
        '{"id": 2, "publish": {"data": "\\ud800"}}',
        '{"id": 2, "publish": {"data": ["\\uDFFFx"]}}',
        '{"id": 1, "ping": {}}\n\n{"id": 2, "ping": {}}',  # an empty command in the middle
        '{"id": 1, "ping": {}}\nnot json',  # one bad part refuses the whole frame
    ],
)
def test_unreadable_frames_are_refused_whole(text: str) -> None:
    with pytest.raises(BadFrame):
        parse_frame(text)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"id": 2}', ErrorCode.METHOD_NOT_FOUND),
        ('{"id": 2, "PING": {}}', ErrorCode.METHOD_NOT_FOUND),
        ('{"id": 2, "method": "ping"}', ErrorCode.METHOD_NOT_FOUND),  # the old wire format
        ('{"id": 2, "ping": "x"}', ErrorCode.BAD_REQUEST),
    ],
)
def test_refused_commands_keep_their_id(text: str, code: int) -> None:
    ((cid, error),) = parse_frame(text)  # type: ignore[misc]
    assert (cid, error.code) == (2, code)


def test_a_frame_holds_a_bounded_number_of_commands() -> None:
    assert len(parse_frame("\n".join(["{}"] * MAX_BATCH))) == MAX_BATCH
    with pytest.raises(BadFrame):
        parse_frame("\n".join(["{}"] * (MAX_BATCH + 1)))


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_bad_frame(text: str) -> None:
    try:
        parsed = parse_frame(text)
    except BadFrame:
        return
    for item in parsed:
        if not isinstance(item, Command):
            assert item[1].code in (ErrorCode.BAD_REQUEST, ErrorCode.METHOD_NOT_FOUND)


# strings around the surrogate block, lone surrogates included: JSON escapes them as \udXXX
_near_surrogates = st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010, exclude_categories=()))


@given(st.lists(_near_surrogates, max_size=4))
def test_a_command_never_holds_a_string_utf8_cannot_encode(strings: list[str]) -> None:
    text = json.dumps({"id": 1, "publish": {"channel": "c", "data": strings}})
    try:
        command = parse_one(text)
    except BadFrame:
        assert any(0xD800 <= ord(c) <= 0xDFFF for s in strings for c in s)
        return
    json.dumps(command.params, ensure_ascii=False).encode("utf-8")  # every frame carrying it can be sent


def test_an_escaped_surrogate_pair_is_one_character_and_passes() -> None:
    command = parse_one('{"id": 1, "publish": {"data": "\\ud83d\\ude00 \\\\ud800"}}')
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


def test_frames_are_centrifugos_json() -> None:
    """Shapes of centrifugal/protocol client.proto (JSON, zero fields omitted)."""
    assert json.loads(reply_frame(4, "presence", {"a": "é"})) == {"id": 4, "presence": {"a": "é"}}
    assert json.loads(reply_frame(4, "history", '{"offset":1}')) == {"id": 4, "history": {"offset": 1}}
    assert json.loads(error_frame(4, HubError(111, "slow down", True))) == {
        "id": 4,
        "error": {"code": 111, "message": "slow down", "temporary": True},
    }
    assert json.loads(error_frame(4, HubError(103, "permission denied"))) == {
        "id": 4,
        "error": {"code": 103, "message": "permission denied"},
    }
    pub = publication_json(3, '{"t":1}', '{"user":"u","client":"c"}')
    assert json.loads(pub) == {"offset": 3, "data": {"t": 1}, "info": {"client": "c", "user": "u"}}
    assert json.loads(publication_json(None, "null", None)) == {"data": None}
    assert json.loads(pub_push_frame(pub, "chat:x")) == {
        "push": {"channel": "chat:x", "pub": json.loads(pub)}
    }
    wildcard = json.loads(pub_push_frame(pub, "chat:*", "chat:x"))
    assert wildcard == {"push": {"channel": "chat:*", "pub": {"channel": "chat:x", **json.loads(pub)}}}
    info = '{"user":"u","client":"c","conn_info":{"name":"Bob"}}'
    assert json.loads(presence_push_frame("join", "chat:x", info)) == {
        "push": {"channel": "chat:x", "join": {"info": json.loads(info)}}
    }
    assert json.loads(unsubscribe_push_frame("chat:x", UnsubscribeCode.SERVER, "server unsubscribe")) == {
        "push": {"channel": "chat:x", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}
    }


def test_disconnect_codes_follow_the_sdks_reconnect_ranges() -> None:
    """3000-3499 and 4000-4499 reconnect; 3500-3999 and 4500-4999 do not (centrifuge/disconnect.go)."""
    reconnecting = (DisconnectCode.SHUTDOWN, DisconnectCode.SLOW, DisconnectCode.INSUFFICIENT_STATE)
    assert all(DisconnectCode.reconnect(code) for code in (*reconnecting, DisconnectCode.NO_PONG, 4000, 4499))
    terminal = (DisconnectCode.UNAUTHORIZED, DisconnectCode.BAD_REQUEST, DisconnectCode.CONNECTION_LIMIT)
    assert not any(DisconnectCode.reconnect(code) for code in (*terminal, 4500, 4999))
    assert DisconnectCode.reconnect(DisconnectCode.TOKEN_EXPIRED)  # with a new token
    assert not UnsubscribeCode.resubscribe(UnsubscribeCode.SERVER)
    assert UnsubscribeCode.resubscribe(UnsubscribeCode.EXPIRED)
