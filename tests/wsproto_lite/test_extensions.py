"""The extension hook (RFC 6455 §9), exercised with a toy extension independent of permessage-deflate."""

from __future__ import annotations

import pytest

from wsproto_lite import (
    Accepted,
    BinaryMessage,
    ClientConnection,
    Config,
    ConnectionClosed,
    Rejected,
    Request,
    ServerConnection,
    TextChunk,
    TextMessage,
)
from wsproto_lite.extensions import Extension, ExtensionError, ExtensionFactory, Params

RSV2 = 0x20


class Doubler(Extension):
    """x-double: a message flagged with RSV2 carries every byte once; the receiver doubles them."""

    name = "x-double"
    rsv_mask = RSV2

    def rsv_ok(self, opcode: int, rsv: int, first_frame: bool) -> bool:
        return opcode in (1, 2) and first_frame

    def start_inbound(self, rsv: int) -> bool:
        return bool(rsv)

    def decode(self, data: bytes, fin: bool, max_size: int | None) -> bytes:
        if data == b"!":
            raise ExtensionError("bad data", 1007)
        out = bytes(b for byte in data for b in (byte, byte))
        if max_size is not None and len(out) > max_size:
            raise ExtensionError("too big", 1009)
        return out

    def encode(self, data: bytes, first_frame: bool, fin: bool, compress: bool | None) -> tuple[int, bytes]:
        if compress is False or len(data) % 2 or data[::2] != data[1::2]:
            return 0, data
        return (RSV2 if first_frame else 0), data[::2]


class DoublerFactory(ExtensionFactory):
    name = "x-double"

    def offer(self) -> str:
        return "x-double; level=2"

    def accept_response(self, params: Params) -> Extension:
        if params:
            raise ExtensionError(f"unexpected parameters {params}")
        return Doubler()

    def negotiate(self, offers: list[Params]) -> tuple[str, Extension] | None:
        for params in offers:
            if params == [("level", "2")]:
                return "x-double", Doubler()
        return None


def negotiated_pair(config: Config | None = None) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection("h", extensions=[DoublerFactory()], config=config)
    server = ServerConnection(config, extensions=[DoublerFactory()])
    server.receive_data(client.data_to_send())
    request = server.next_event()
    assert isinstance(request, Request) and request.extensions == ("x-double; level=2",)
    server.accept()
    client.receive_data(server.data_to_send())
    accepted = client.next_event()
    assert isinstance(accepted, Accepted) and accepted.extensions == ("x-double",)
    assert [e.name for e in client.extensions] == [e.name for e in server.extensions] == ["x-double"]
    return client, server


def test_messages_pass_through_the_extension() -> None:
    client, server = negotiated_pair()
    client.send_binary(b"aabbcc")
    wire = client.data_to_send()
    assert wire[0] == 0x80 | RSV2 | 0x2 and wire[1] & 0x7F == 3  # encoded: RSV2 set, half the bytes
    client.send_text("xyz")  # not encodable: sent as it is, RSV2 clear
    client.send_binary(b"qq", compress=False)
    server.receive_data(wire + client.data_to_send())
    assert list(server.events()) == [BinaryMessage(b"aabbcc"), TextMessage("xyz"), BinaryMessage(b"qq")]


def test_fragments_carry_the_rsv_bit_on_the_first_frame_only() -> None:
    client, server = negotiated_pair(Config(stream_messages=True))
    client.send_text("aa", fin=False)
    client.send_text("bb")
    wire = client.data_to_send()
    assert wire[0] == RSV2 | 0x1
    server.receive_data(wire)
    assert list(server.events()) == [TextChunk("aa", False), TextChunk("bb", True)]


def frame(first: int, payload: bytes) -> bytes:
    mask = b"\0\0\0\0"
    return bytes((first, 0x80 | len(payload))) + mask + payload


@pytest.mark.parametrize(
    "data, code",
    [
        (frame(0x80 | RSV2 | 0x9, b""), 1002),  # the extension forbids RSV2 on a control frame
        (frame(RSV2 | 0x2, b"a") + frame(0x80 | RSV2 | 0x0, b"b"), 1002),  # ... and on a continuation
        (frame(0x80 | 0x40 | 0x2, b"a"), 1002),  # RSV1 belongs to nobody here
        (frame(0x80 | RSV2 | 0x2, b"!"), 1007),  # the extension's own verdict
        (frame(0x80 | RSV2 | 0x2, b"abcdef"), 1009),  # decoded size counts against the limit
    ],
)
def test_extension_rules_fail_the_connection(data: bytes, code: int) -> None:
    _, server = negotiated_pair(Config(max_message_size=10))
    server.receive_data(data)
    events = list(server.events())
    assert isinstance(events[-1], ConnectionClosed) and events[-1].code == code


def test_server_declines_an_offer_it_does_not_like() -> None:
    client = ClientConnection("h", extensions=[DoublerFactory()])
    server = ServerConnection(extensions=[DoublerFactory()])
    server.receive_data(client.data_to_send().replace(b"level=2", b"level=3"))
    server.next_event()
    server.accept()
    assert b"Sec-WebSocket-Extensions" not in server.data_to_send()
    assert server.extensions == ()


def test_client_fails_on_parameters_it_refuses() -> None:
    client = ClientConnection("h", extensions=[DoublerFactory()])
    server = ServerConnection()
    server.receive_data(client.data_to_send())
    server.next_event()
    server.accept(extra_headers=[("Sec-WebSocket-Extensions", "x-double; level=9")])
    client.receive_data(server.data_to_send())
    rejected = client.next_event()
    assert isinstance(rejected, Rejected) and rejected.status == 101
    assert isinstance(client.next_event(), ConnectionClosed)


def test_client_fails_on_a_repeated_extension() -> None:
    client = ClientConnection("h", extensions=[DoublerFactory()])
    server = ServerConnection()
    server.receive_data(client.data_to_send())
    server.next_event()
    server.accept(extra_headers=[("Sec-WebSocket-Extensions", "x-double, x-double")])
    client.receive_data(server.data_to_send())
    assert isinstance(client.next_event(), Rejected)


def test_an_extension_that_does_not_answer_decodes_sees_every_message() -> None:
    """The default ``decodes`` says yes, so plain frames skip the reader's fast case and reach
    start_inbound; an extension that answers no for them gets only its own messages."""
    seen: list[int] = []

    class Counting(Doubler):
        def start_inbound(self, rsv: int) -> bool:
            seen.append(rsv)
            return super().start_inbound(rsv)

    class CountingFactory(DoublerFactory):
        def negotiate(self, offers: list[Params]) -> tuple[str, Extension] | None:
            return "x-double", Counting()

    client = ClientConnection("h", extensions=[DoublerFactory()])
    server = ServerConnection(extensions=[CountingFactory()])
    server.receive_data(client.data_to_send())
    server.next_event()
    server.accept()
    client.receive_data(server.data_to_send())
    client.send_text("a", compress=False)
    client.send_text("b", compress=False)
    server.receive_data(client.data_to_send())
    assert list(server.events()) == [TextMessage("a"), TextMessage("b")]
    assert seen == [0, 0] and Counting().decodes(0)


def test_release_is_optional() -> None:
    Doubler().release()  # the default does nothing and needs no override
