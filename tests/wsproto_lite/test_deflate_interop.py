"""permessage-deflate end to end: our connections with each other and with the `websockets` library.

Everything runs in memory: the connections are sans-IO, bytes are handed over directly.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import pytest

from wsproto_lite import (
    Accepted,
    BinaryChunk,
    BinaryMessage,
    ClientConnection,
    Config,
    ConnectionClosed,
    Event,
    PerMessageDeflate,
    Request,
    ServerConnection,
    TextMessage,
)
from wsproto_lite._deflate import _DeflateExtension

websockets = pytest.importorskip("websockets")
from websockets.client import ClientProtocol  # noqa: E402
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode  # noqa: E402
from websockets.http11 import Response  # noqa: E402
from websockets.protocol import State  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

RSV1 = 0x40
JSON = '{"type": "update", "id": 12345, "user": {"name": "alice", "roles": ["admin", "dev"]}, "ok": true}'


# -- helpers -----------------------------------------------------------------------------------------


def connect(
    client_pmd: PerMessageDeflate,
    server_pmd: PerMessageDeflate,
    config: Config | None = None,
) -> tuple[ClientConnection, ServerConnection, Accepted]:
    client = ClientConnection("localhost", "/", extensions=[client_pmd], config=config)
    server = ServerConnection(config=config, extensions=[server_pmd])
    server.receive_data(client.data_to_send())
    events = list(server.events())
    assert len(events) == 1 and isinstance(events[0], Request)
    server.accept()
    client.receive_data(server.data_to_send())
    events = list(client.events())
    assert len(events) == 1 and isinstance(events[0], Accepted)
    return client, server, events[0]


def deliver(
    src: ClientConnection | ServerConnection, dst: ClientConnection | ServerConnection
) -> list[Event]:
    dst.receive_data(src.data_to_send())
    return list(dst.events())


def frames_of(wire: bytes) -> list[tuple[int, int, bool, bytes]]:
    """Split raw (possibly masked) frames into ``(opcode, rsv, fin, unmasked payload)``."""
    out = []
    pos = 0
    while pos < len(wire):
        b0, b1 = wire[pos], wire[pos + 1]
        pos += 2
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", wire[pos : pos + 2])
            pos += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", wire[pos : pos + 8])
            pos += 8
        mask = b""
        if b1 & 0x80:
            mask, pos = wire[pos : pos + 4], pos + 4
        payload = wire[pos : pos + length]
        pos += length
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        out.append((b0 & 0x0F, b0 & 0x70, bool(b0 & 0x80), payload))
    return out


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame built by hand (to send what our own client never would)."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 2**16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


# -- our client <-> our server -----------------------------------------------------------------------


def test_handshake_negotiates_and_exposes_the_extension() -> None:
    client, server, accepted = connect(
        PerMessageDeflate(server_max_window_bits=10, client_no_context_takeover=True), PerMessageDeflate()
    )
    assert accepted.extensions == (
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=10",
    )
    (cext,), (sext,) = client.extensions, server.extensions
    assert isinstance(cext, _DeflateExtension) and isinstance(sext, _DeflateExtension)
    assert (cext.send_window_bits, cext.recv_window_bits) == (15, 10)
    assert (sext.send_window_bits, sext.recv_window_bits) == (10, 15)
    assert cext.send_no_context_takeover and sext.recv_no_context_takeover


def raw_handshake(extensions_header: str, pmd: PerMessageDeflate) -> tuple[ServerConnection, str | None]:
    """Send a hand-written upgrade request; return the server and its Sec-WebSocket-Extensions answer."""
    server = ServerConnection(extensions=[pmd])
    server.receive_data(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + f"Sec-WebSocket-Extensions: {extensions_header}\r\n\r\n".encode()
    )
    (request,) = list(server.events())
    assert isinstance(request, Request)
    server.accept()
    head = server.data_to_send().decode("latin-1")
    assert head.startswith("HTTP/1.1 101")
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "sec-websocket-extensions":
            return server, value.strip()
    return server, None


@pytest.mark.parametrize(
    ("header", "answer"),
    [
        ('permessage-deflate; server_max_window_bits="10"', "permessage-deflate; server_max_window_bits=10"),
        (
            "permessage-deflate; server_max_window_bits=16, permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
        ),
        ("x-unknown, permessage-deflate; foo, permessage-deflate", "permessage-deflate"),
        ("permessage-deflate; server_max_window_bits=010", None),
        ('permessage-deflate; client_max_window_bits="9"', "permessage-deflate; client_max_window_bits=9"),
    ],
)
def test_server_answers_raw_offers(header: str, answer: str | None) -> None:
    server, got = raw_handshake(header, PerMessageDeflate())
    assert got == answer
    assert len(server.extensions) == (answer is not None)


@pytest.mark.parametrize("nct", [False, True])
def test_messages_both_ways_are_compressed_on_the_wire(nct: bool) -> None:
    pmd = PerMessageDeflate(client_no_context_takeover=nct, server_no_context_takeover=nct)
    client, server, _ = connect(pmd, pmd)
    for _ in range(3):
        client.send_text(JSON * 20)
        wire = client.data_to_send()
        ((opcode, rsv, fin, payload),) = frames_of(wire)
        assert (opcode, rsv, fin) == (1, RSV1, True) and len(payload) < len(JSON) * 2
        server.receive_data(wire)
        assert list(server.events()) == [TextMessage(JSON * 20)]
        server.send_binary(JSON.encode() * 20)
        assert deliver(server, client) == [BinaryMessage(JSON.encode() * 20)]


def test_fragmented_compressed_send_and_receive() -> None:
    client, server, _ = connect(PerMessageDeflate(), PerMessageDeflate())
    parts = [JSON[:10], JSON[10:] * 30, "", "tail"]
    for k, part in enumerate(parts):
        client.send_text(part, fin=k == len(parts) - 1)
    wire = client.data_to_send()
    frames = frames_of(wire)
    assert [(op, rsv, fin) for op, rsv, fin, _ in frames] == [
        (1, RSV1, False),
        (0, 0, False),
        (0, 0, False),
        (0, 0, True),
    ]
    server.receive_data(wire)
    assert list(server.events()) == [TextMessage("".join(parts))]


def test_small_and_opted_out_messages_are_sent_plain() -> None:
    client, server, _ = connect(PerMessageDeflate(), PerMessageDeflate())
    client.send_text("hi")  # below the default threshold
    client.send_binary(JSON.encode() * 10, compress=False)
    client.send_text("x", compress=True)
    wire = client.data_to_send()
    assert [rsv for _, rsv, _, _ in frames_of(wire)] == [0, 0, RSV1]
    server.receive_data(wire)
    assert list(server.events()) == [TextMessage("hi"), BinaryMessage(JSON.encode() * 10), TextMessage("x")]


def test_streamed_chunks_of_a_compressed_message() -> None:
    client, server, _ = connect(PerMessageDeflate(), PerMessageDeflate(), Config(stream_messages=True))
    data = os.urandom(5000) + JSON.encode() * 200
    client.send_binary(data)
    wire = client.data_to_send()
    chunks: list[Event] = []
    for i in range(0, len(wire), 7):
        server.receive_data(wire[i : i + 7])
        chunks.extend(server.events())
    assert all(isinstance(c, BinaryChunk) for c in chunks)
    assert b"".join(c.data for c in chunks if isinstance(c, BinaryChunk)) == data
    last = chunks[-1]
    assert isinstance(last, BinaryChunk) and last.final


def failed_with(server: ServerConnection, wire: bytes) -> int:
    server.receive_data(wire)
    events = list(server.events())
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    assert server.close_sent is not None
    out = frames_of(server.data_to_send())
    assert out and out[-1][0] == 0x8
    code = int.from_bytes(out[-1][3][:2], "big")
    assert code == server.close_sent[0]
    if closed:
        assert closed[0].code == code
    return code


def test_zip_bomb_closes_1009_without_inflating_it() -> None:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = b"\0" * 2**20
    bomb = b"".join(c.compress(zeros) for _ in range(100)) + c.flush(zlib.Z_SYNC_FLUSH)  # 100 MiB in ~100 KB
    assert len(bomb) < 2**20
    client, server, _ = connect(PerMessageDeflate(), PerMessageDeflate(), Config(max_message_size=2**20))
    assert failed_with(server, client_frame(0x2, bomb[:-4], rsv=RSV1)) == 1009


def test_message_just_within_the_limit_passes() -> None:
    data = os.urandom(100) * 100
    client, server, _ = connect(PerMessageDeflate(), PerMessageDeflate(), Config(max_message_size=len(data)))
    client.send_binary(data[:3000], fin=False)
    client.send_binary(data[3000:])
    assert deliver(client, server) == [BinaryMessage(data)]
    client.send_binary(data + b"!")
    assert failed_with(server, client.data_to_send()) == 1009


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (client_frame(0x1, deflate(b"Hel"), fin=False, rsv=RSV1) + client_frame(0x0, b"", rsv=RSV1), 1002),
        (client_frame(0x9, b"ping", rsv=RSV1), 1002),  # RFC 7692 §6.1: never on control frames
        (client_frame(0x2, b"\xff\xff\xff\xff", rsv=RSV1), 1007),  # not deflate data
        (client_frame(0x1, deflate(b"\xff\xfe"), rsv=RSV1), 1007),  # inflates to invalid UTF-8
        (client_frame(0x2, b"x", rsv=0x20), 1002),  # RSV2: no extension owns it
    ],
)
def test_peer_errors_close_the_connection(wire: bytes, code: int) -> None:
    _, server, _ = connect(PerMessageDeflate(), PerMessageDeflate())
    assert failed_with(server, wire) == code


def test_rsv1_without_deflate_negotiated_is_1002() -> None:
    plain_server = ServerConnection(extensions=[])
    plain_client = ClientConnection("localhost", extensions=[PerMessageDeflate()])
    plain_server.receive_data(plain_client.data_to_send())
    list(plain_server.events())
    plain_server.accept()
    plain_client.receive_data(plain_server.data_to_send())
    assert [type(e) for e in plain_client.events()] == [Accepted]
    assert plain_client.extensions == ()
    assert failed_with(plain_server, client_frame(0x2, deflate(b"abc"), rsv=RSV1)) == 1002


def test_prepared_message_on_a_deflate_connection_is_plain() -> None:
    from wsproto_lite import prepare_message

    client, server, _ = connect(PerMessageDeflate(), PerMessageDeflate())
    server.send_text(JSON * 5)
    server.send_prepared(prepare_message(JSON * 5))
    server.send_text(JSON * 5)
    wire = server.data_to_send()
    assert [rsv for _, rsv, _, _ in frames_of(wire)] == [RSV1, 0, RSV1]
    client.receive_data(wire)
    assert list(client.events()) == [TextMessage(JSON * 5)] * 3


# -- interop with the websockets library (sans-IO protocols) -----------------------------------------


def ws_messages(protocol: ServerProtocol | ClientProtocol) -> list[tuple[Opcode, bytes]]:
    """Reassemble the data messages websockets received (its frames are already decompressed)."""
    messages: list[tuple[Opcode, bytes]] = []
    current: tuple[Opcode, list[bytes]] | None = None
    for event in protocol.events_received():
        assert isinstance(event, Frame)
        if event.opcode in (Opcode.TEXT, Opcode.BINARY):
            current = (event.opcode, [bytes(event.data)])
        elif event.opcode is Opcode.CONT:
            assert current is not None
            current[1].append(bytes(event.data))
        else:
            continue
        if event.fin:
            assert current is not None
            messages.append((current[0], b"".join(current[1])))
            current = None
    return messages


def ws_send(protocol: ServerProtocol | ClientProtocol) -> bytes:
    return b"".join(protocol.data_to_send())


PAYLOADS = [JSON.encode(), JSON.encode() * 300, os.urandom(70_000), b"", b"a" * 100_000]

CONFIGS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    # (our factory options, websockets factory options)
    ({}, {}),
    ({"client_no_context_takeover": True, "server_no_context_takeover": True}, {}),
    ({}, {"client_no_context_takeover": True, "server_no_context_takeover": True}),
    ({"server_max_window_bits": 9, "client_max_window_bits": 10}, {}),
    ({}, {"server_max_window_bits": 11, "client_max_window_bits": 9}),
    ({"compress_level": 1, "mem_level": 5, "compress_threshold": 0}, {"compress_settings": {"memLevel": 4}}),
]


@pytest.mark.parametrize(("ours", "theirs"), CONFIGS)
def test_our_client_with_websockets_server(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    client = ClientConnection("localhost", "/", extensions=[PerMessageDeflate(**ours)])
    ws = ServerProtocol(extensions=[ServerPerMessageDeflateFactory(**theirs)], max_size=None)
    ws.receive_data(client.data_to_send())
    (request,) = ws.events_received()
    response = ws.accept(request)  # type: ignore[arg-type]
    assert response.status_code == 101
    ws.send_response(response)
    assert "permessage-deflate" in response.headers["Sec-WebSocket-Extensions"]
    client.receive_data(ws_send(ws))
    events = list(client.events())
    assert [type(e) for e in events] == [Accepted] and len(client.extensions) == 1
    for payload in PAYLOADS:
        client.send_binary(payload)
        client.send_text(payload[:5000].decode("latin-1"), fin=False)
        client.send_text(payload[5000:].decode("latin-1"))
        wire = client.data_to_send()
        if len(payload) > 1000:
            assert frames_of(wire)[0][1] == RSV1
        ws.receive_data(wire)
        assert ws_messages(ws) == [
            (Opcode.BINARY, payload),
            (Opcode.TEXT, payload.decode("latin-1").encode("utf-8")),
        ]
        ws.send_binary(payload)
        ws.send_text(payload[:100].decode("latin-1").encode(), fin=False)
        ws.send_continuation(payload[100:].decode("latin-1").encode(), fin=True)
        wire = ws_send(ws)
        assert frames_of(wire)[0][1] == RSV1  # websockets compresses every message
        client.receive_data(wire)
        assert list(client.events()) == [BinaryMessage(payload), TextMessage(payload.decode("latin-1"))]
    client.close()
    ws.receive_data(client.data_to_send())
    client.receive_data(ws_send(ws))
    assert isinstance(list(client.events())[-1], ConnectionClosed)


@pytest.mark.parametrize(("ours", "theirs"), CONFIGS)
def test_websockets_client_with_our_server(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    ws = ClientProtocol(
        parse_uri("ws://localhost/"), extensions=[ClientPerMessageDeflateFactory(**theirs)], max_size=None
    )
    ws.send_request(ws.connect())
    server = ServerConnection(Config(max_message_size=None), extensions=[PerMessageDeflate(**ours)])
    server.receive_data(ws_send(ws))
    (request,) = list(server.events())
    assert isinstance(request, Request)
    server.accept()
    ws.receive_data(server.data_to_send())
    (response,) = ws.events_received()
    assert isinstance(response, Response) and ws.state is State.OPEN
    assert len(server.extensions) == 1
    for payload in PAYLOADS:
        ws.send_binary(payload)
        ws.send_text(payload[:100].decode("latin-1").encode(), fin=False)
        ws.send_continuation(payload[100:].decode("latin-1").encode(), fin=True)
        wire = ws_send(ws)
        assert frames_of(wire)[0][1] == RSV1
        server.receive_data(wire)
        assert list(server.events()) == [BinaryMessage(payload), TextMessage(payload.decode("latin-1"))]
        server.send_binary(payload)
        server.send_binary(payload[:7], fin=False)
        server.send_binary(payload[7:], fin=True)
        wire = server.data_to_send()
        if len(payload) > 1000:
            assert frames_of(wire)[0][1] == RSV1
        ws.receive_data(wire)
        assert ws_messages(ws) == [(Opcode.BINARY, payload), (Opcode.BINARY, payload)]
    server.close()
    ws.receive_data(server.data_to_send())
    server.receive_data(ws_send(ws))
    assert isinstance(list(server.events())[-1], ConnectionClosed)


def test_websockets_server_negotiates_what_we_offer() -> None:
    """Each of our offers, as websockets' server understands it, round-trips the agreed parameters."""
    for ours in (
        {"server_max_window_bits": 12},
        {"client_max_window_bits": 9},
        {"server_no_context_takeover": True},
    ):
        client = ClientConnection("localhost", "/", extensions=[PerMessageDeflate(**ours)])
        ws = ServerProtocol(extensions=[ServerPerMessageDeflateFactory(client_max_window_bits=11)])
        ws.receive_data(client.data_to_send())
        (request,) = ws.events_received()
        response = ws.accept(request)  # type: ignore[arg-type]
        ws.send_response(response)
        client.receive_data(ws_send(ws))
        assert [type(e) for e in client.events()] == [Accepted]
        (ext,) = client.extensions
        assert isinstance(ext, _DeflateExtension)
        (theirs,) = ws.extensions
        assert ext.send_window_bits == theirs.remote_max_window_bits  # type: ignore[attr-defined]
        assert ext.recv_window_bits == theirs.local_max_window_bits  # type: ignore[attr-defined]
        assert ext.send_no_context_takeover == theirs.remote_no_context_takeover  # type: ignore[attr-defined]
        assert ext.recv_no_context_takeover == theirs.local_no_context_takeover  # type: ignore[attr-defined]
