"""permessage-deflate (RFC 7692): negotiation matrix, per-message transform, bounds, RSV rules."""

from __future__ import annotations

import os
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsproto_lite._deflate import PerMessageDeflate, _DeflateExtension
from wsproto_lite._errors import ExtensionError
from wsproto_lite.extensions import Extension, Params

RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
TAIL = b"\x00\x00\xff\xff"


def split_header(value: str) -> tuple[str, Params]:
    """Parse one extension element the way the core does (no quoting needed in our own offers)."""
    name, *rest = (part.strip() for part in value.split(";"))
    params: Params = []
    for item in rest:
        key, sep, val = item.partition("=")
        params.append((key.strip(), val.strip() if sep else None))
    return name, params


def pair(
    client: PerMessageDeflate, server: PerMessageDeflate | None = None
) -> tuple[Extension, Extension, str]:
    """Negotiate a client/server extension pair through offer -> negotiate -> accept_response."""
    server = server or PerMessageDeflate()
    name, offer = split_header(client.offer())
    assert name == "permessage-deflate"
    negotiated = server.negotiate([offer])
    assert negotiated is not None
    response, server_ext = negotiated
    rname, rparams = split_header(response)
    assert rname == "permessage-deflate"
    return client.accept_response(rparams), server_ext, response


def send(
    ext: Extension, message: bytes, *, sizes: list[int] | None = None, compress: bool | None = None
) -> list[tuple[int, bytes]]:
    """Encode a message as frames cut at ``sizes`` (the rest in the last frame)."""
    cuts = [0]
    for size in sizes or []:
        cuts.append(min(cuts[-1] + size, len(message)))
    cuts.append(len(message))
    frames = []
    for i in range(len(cuts) - 1):
        frames.append(ext.encode(message[cuts[i] : cuts[i + 1]], i == 0, i == len(cuts) - 2, compress))
    return frames


def receive(ext: Extension, frames: list[tuple[int, bytes]], max_size: int | None = None) -> bytes:
    """Decode frames as the core would: RSV checks, start_inbound on the first one, decode each."""
    out: list[bytes] = []
    transform = False
    for i, (rsv, payload) in enumerate(frames):
        opcode = BINARY if i == 0 else CONT
        assert ext.rsv_ok(opcode, rsv, i == 0)
        if i == 0:
            transform = ext.start_inbound(rsv)
        if transform:
            # Like the core: max_size is what the message may still grow by.
            remaining = None if max_size is None else max_size - sum(map(len, out))
            out.append(ext.decode(payload, i == len(frames) - 1, remaining))
        else:
            out.append(payload)
    return b"".join(out)


def deflate_ext(**kwargs: object) -> _DeflateExtension:
    defaults: dict[str, object] = dict(
        send_window_bits=15,
        send_no_context_takeover=False,
        recv_window_bits=15,
        recv_no_context_takeover=False,
        compress_threshold=0,
    )
    defaults.update(kwargs)
    return _DeflateExtension(**defaults)  # type: ignore[arg-type]


JSON = b'{"type": "update", "id": 12345, "user": {"name": "alice", "roles": ["admin", "dev"]}, "ok": true}'


# -- factory options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"client_max_window_bits": 7},
        {"client_max_window_bits": 16},
        {"client_max_window_bits": False},
        {"server_max_window_bits": True},
        {"server_max_window_bits": 16},
        {"server_max_window_bits": 7},
        {"server_max_window_bits": "10"},
        {"compress_level": 10},
        {"compress_level": -2},
        {"mem_level": 0},
        {"mem_level": 10},
        {"compress_threshold": -1},
        {"require_client_max_window_bits": True},
        {"require_client_max_window_bits": True, "client_max_window_bits": True},
    ],
)
def test_factory_rejects_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PerMessageDeflate(**kwargs)  # type: ignore[arg-type]


def test_factory_is_an_extension_factory_named_permessage_deflate() -> None:
    factory = PerMessageDeflate()
    assert factory.name == "permessage-deflate"
    assert "PerMessageDeflate(" in repr(factory)


@pytest.mark.parametrize(
    ("kwargs", "offer"),
    [
        ({}, "permessage-deflate; client_max_window_bits"),
        ({"client_max_window_bits": None}, "permessage-deflate"),
        ({"client_max_window_bits": 10}, "permessage-deflate; client_max_window_bits=10"),
        (
            {"server_max_window_bits": 8, "client_max_window_bits": None},
            "permessage-deflate; server_max_window_bits=8",
        ),
        (
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "client_max_window_bits": None,
            },
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 12,
                "client_max_window_bits": 9,
            },
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12; "
            "client_max_window_bits=9",
        ),
    ],
)
def test_client_offer(kwargs: dict[str, object], offer: str) -> None:
    assert PerMessageDeflate(**kwargs).offer() == offer  # type: ignore[arg-type]


# -- server negotiation ------------------------------------------------------------------------------


def server_answer(offers: list[Params], **kwargs: object) -> tuple[str, _DeflateExtension] | None:
    result = PerMessageDeflate(**kwargs).negotiate(offers)  # type: ignore[arg-type]
    if result is None:
        return None
    response, ext = result
    assert isinstance(ext, _DeflateExtension)
    return response, ext


@pytest.mark.parametrize(
    ("offer", "kwargs", "response", "windows", "no_takeover"),
    [
        # (offer params, server options, response, (send bits, recv bits),
        #  (send no-takeover, recv no-takeover))
        ([], {}, "permessage-deflate", (15, 15), (False, False)),
        (
            [("server_no_context_takeover", None)],
            {},
            "permessage-deflate; server_no_context_takeover",
            (15, 15),
            (True, False),
        ),
        (
            [("client_no_context_takeover", None)],
            {},
            "permessage-deflate; client_no_context_takeover",
            (15, 15),
            (False, True),
        ),
        (
            [("server_max_window_bits", "10")],
            {},
            "permessage-deflate; server_max_window_bits=10",
            (10, 15),
            (False, False),
        ),
        (
            [("server_max_window_bits", "8")],
            {},
            "permessage-deflate; server_max_window_bits=8",
            (8, 15),
            (False, False),
        ),
        (
            [("server_max_window_bits", "12")],
            {"server_max_window_bits": 9},
            "permessage-deflate; server_max_window_bits=9",
            (9, 15),
            (False, False),
        ),
        (
            [("server_max_window_bits", "9")],
            {"server_max_window_bits": 12},
            "permessage-deflate; server_max_window_bits=9",
            (9, 15),
            (False, False),
        ),
        (
            [],
            {"server_max_window_bits": 11},
            "permessage-deflate; server_max_window_bits=11",
            (11, 15),
            (False, False),
        ),
        ([("client_max_window_bits", None)], {}, "permessage-deflate", (15, 15), (False, False)),
        (
            [("client_max_window_bits", None)],
            {"client_max_window_bits": 10},
            "permessage-deflate; client_max_window_bits=10",
            (15, 10),
            (False, False),
        ),
        (
            [("client_max_window_bits", "12")],
            {},
            "permessage-deflate; client_max_window_bits=12",
            (15, 12),
            (False, False),
        ),
        (
            [("client_max_window_bits", "12")],
            {"client_max_window_bits": 9},
            "permessage-deflate; client_max_window_bits=9",
            (15, 9),
            (False, False),
        ),
        (
            [("client_max_window_bits", "8")],
            {"client_max_window_bits": 9},
            "permessage-deflate; client_max_window_bits=8",
            (15, 8),
            (False, False),
        ),
        (
            [("client_max_window_bits", None)],
            {"client_max_window_bits": 8},
            "permessage-deflate; client_max_window_bits=9",
            (15, 9),
            (False, False),
        ),
        (
            [("client_max_window_bits", "12")],
            {"client_max_window_bits": 8},
            "permessage-deflate; client_max_window_bits=9",
            (15, 9),
            (False, False),
        ),
        # No client_max_window_bits offered: MUST NOT answer it, even with a configured limit (§7.1.2.2).
        ([], {"client_max_window_bits": 10}, "permessage-deflate", (15, 15), (False, False)),
        # The server may impose both no_context_takeover parameters on its own (§7.1.1).
        (
            [],
            {"server_no_context_takeover": True, "client_no_context_takeover": True},
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            (15, 15),
            (True, True),
        ),
        # Parameter names are matched case-insensitively; the response uses the canonical spelling.
        (
            [("Server_Max_Window_Bits", "10"), ("CLIENT_NO_CONTEXT_TAKEOVER", None)],
            {},
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=10",
            (10, 15),
            (False, True),
        ),
        (
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "8"),
                ("client_max_window_bits", "8"),
            ],
            {},
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=8; "
            "client_max_window_bits=8",
            (8, 8),
            (True, True),
        ),
    ],
)
def test_server_accepts(
    offer: Params,
    kwargs: dict[str, object],
    response: str,
    windows: tuple[int, int],
    no_takeover: tuple[bool, bool],
) -> None:
    result = server_answer([offer], **kwargs)
    assert result is not None
    got, ext = result
    assert got == response
    assert (ext.send_window_bits, ext.recv_window_bits) == windows
    assert (ext.send_no_context_takeover, ext.recv_no_context_takeover) == no_takeover


def one(name: str, value: str | None) -> Params:
    return [(name, value)]


INVALID_OFFERS: list[Params] = [
    [("unknown_param", None)],
    [("x", "1")],
    [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
    [("client_no_context_takeover", None), ("Client_No_Context_Takeover", None)],
    [("server_max_window_bits", "10"), ("server_max_window_bits", "10")],
    [("client_max_window_bits", None), ("client_max_window_bits", "10")],
    [("server_no_context_takeover", "")],
    [("server_no_context_takeover", "true")],
    [("client_no_context_takeover", "1")],
    [("server_max_window_bits", None)],
    *[
        one("server_max_window_bits", v)
        for v in ["", "7", "16", "08", "+9", "9.0", " 9", "0x9", "abc", "15 "]
    ],
    *[one("client_max_window_bits", v) for v in ["", "7", "16", "08", "-9", "1e1", "１０"]],
]


@pytest.mark.parametrize("offer", INVALID_OFFERS)
def test_server_declines_invalid_offer_and_takes_the_next(offer: Params) -> None:
    assert server_answer([offer]) is None
    result = server_answer([offer, [("client_no_context_takeover", None)]])
    assert result is not None
    assert result[0] == "permessage-deflate; client_no_context_takeover"


def test_server_picks_first_acceptable_offer_in_client_order() -> None:
    offers: list[Params] = [
        [("server_max_window_bits", "10")],
        [("client_no_context_takeover", None)],
    ]
    result = server_answer(offers)
    assert result is not None and result[0] == "permessage-deflate; server_max_window_bits=10"
    assert server_answer([]) is None


def test_server_policy_require_client_max_window_bits() -> None:
    kwargs: dict[str, object] = {"client_max_window_bits": 10, "require_client_max_window_bits": True}
    assert server_answer([[]], **kwargs) is None
    assert server_answer([[("server_no_context_takeover", None)]], **kwargs) is None
    result = server_answer([[], [("client_max_window_bits", None)]], **kwargs)
    assert result is not None
    assert result[0] == "permessage-deflate; client_max_window_bits=10"
    assert result[1].recv_window_bits == 10


# -- client acceptance -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "response", "windows", "no_takeover"),
    [
        # (client options, response params, (send bits, recv bits), (send no-takeover, recv no-takeover))
        ({}, [], (15, 15), (False, False)),
        ({}, [("server_no_context_takeover", None)], (15, 15), (False, True)),
        ({}, [("client_no_context_takeover", None)], (15, 15), (True, False)),
        ({"client_no_context_takeover": True}, [], (15, 15), (True, False)),
        ({}, [("server_max_window_bits", "9")], (15, 9), (False, False)),  # unasked: allowed (§7.1.2.1)
        ({"server_max_window_bits": 10}, [("server_max_window_bits", "10")], (15, 10), (False, False)),
        ({"server_max_window_bits": 10}, [("server_max_window_bits", "8")], (15, 8), (False, False)),
        (
            {"server_no_context_takeover": True},
            [("server_no_context_takeover", None)],
            (15, 15),
            (False, True),
        ),
        ({}, [("client_max_window_bits", "11")], (11, 15), (False, False)),
        ({}, [("client_max_window_bits", "8")], (8, 15), (False, False)),
        ({"client_max_window_bits": 12}, [("client_max_window_bits", "12")], (12, 15), (False, False)),
        ({"client_max_window_bits": 12}, [("client_max_window_bits", "9")], (9, 15), (False, False)),
        ({"client_max_window_bits": 12}, [], (12, 15), (False, False)),
        (
            {},
            [("SERVER_NO_CONTEXT_TAKEOVER", None), ("Client_Max_Window_Bits", "10")],
            (10, 15),
            (False, True),
        ),
    ],
)
def test_client_accepts(
    kwargs: dict[str, object], response: Params, windows: tuple[int, int], no_takeover: tuple[bool, bool]
) -> None:
    ext = PerMessageDeflate(**kwargs).accept_response(response)  # type: ignore[arg-type]
    assert isinstance(ext, _DeflateExtension)
    assert (ext.send_window_bits, ext.recv_window_bits) == windows
    assert (ext.send_no_context_takeover, ext.recv_no_context_takeover) == no_takeover


@pytest.mark.parametrize(
    ("kwargs", "response"),
    [
        ({}, [("unknown", None)]),
        ({}, [("server_no_context_takeover", None), ("server_no_context_takeover", None)]),
        ({}, [("client_max_window_bits", "10"), ("client_max_window_bits", "10")]),
        ({}, [("server_no_context_takeover", "x")]),
        ({}, [("client_no_context_takeover", "")]),
        ({}, [("server_max_window_bits", None)]),
        ({}, [("server_max_window_bits", "16")]),
        ({}, [("server_max_window_bits", "010")]),
        ({}, [("client_max_window_bits", None)]),  # a response needs a value (§7.1.2.2)
        ({}, [("client_max_window_bits", "7")]),
        ({"client_max_window_bits": None}, [("client_max_window_bits", "10")]),  # not offered
        ({"client_max_window_bits": 10}, [("client_max_window_bits", "11")]),  # larger than offered
        ({"server_max_window_bits": 10}, []),  # not honoured
        ({"server_max_window_bits": 10}, [("server_max_window_bits", "11")]),  # larger than offered
        ({"server_no_context_takeover": True}, []),  # not echoed
    ],
)
def test_client_rejects_invalid_response(kwargs: dict[str, object], response: Params) -> None:
    with pytest.raises(ExtensionError) as info:
        PerMessageDeflate(**kwargs).accept_response(response)  # type: ignore[arg-type]
    assert info.value.code == 1002
    assert "permessage-deflate" in info.value.reason


@pytest.mark.parametrize(
    ("client", "server"),
    [
        ({}, {}),
        ({"client_no_context_takeover": True, "server_no_context_takeover": True}, {}),
        ({"server_max_window_bits": 9, "client_max_window_bits": 8}, {}),
        (
            {},
            {"server_max_window_bits": 10, "client_max_window_bits": 11, "server_no_context_takeover": True},
        ),
        ({"client_max_window_bits": None}, {"client_max_window_bits": 9}),
    ],
)
def test_offer_negotiate_accept_agree(client: dict[str, object], server: dict[str, object]) -> None:
    cext, sext, _ = pair(PerMessageDeflate(**client), PerMessageDeflate(**server))  # type: ignore[arg-type]
    assert isinstance(cext, _DeflateExtension) and isinstance(sext, _DeflateExtension)
    assert cext.send_window_bits == sext.recv_window_bits
    assert sext.send_window_bits == cext.recv_window_bits
    assert cext.send_no_context_takeover == sext.recv_no_context_takeover
    assert sext.send_no_context_takeover == cext.recv_no_context_takeover


# -- RSV rules ---------------------------------------------------------------------------------------


def test_rsv_ok_rules() -> None:
    ext = deflate_ext()
    assert ext.name == "permessage-deflate" and ext.rsv_mask == RSV1
    for opcode in (TEXT, BINARY):
        assert ext.rsv_ok(opcode, RSV1, True)
        assert ext.rsv_ok(opcode, 0, True)
    # RFC 7692 §6.1: never on a continuation frame or a control frame.
    assert not ext.rsv_ok(CONT, RSV1, False)
    assert ext.rsv_ok(CONT, 0, False)
    for opcode in (CLOSE, PING, PONG):
        assert not ext.rsv_ok(opcode, RSV1, True)
        assert ext.rsv_ok(opcode, 0, True)
    assert not ext.rsv_ok(TEXT, RSV1, False)  # not the first frame of the message


def test_encode_sets_rsv1_on_first_frame_only() -> None:
    ext = deflate_ext()
    frames = send(ext, JSON * 10, sizes=[100, 100])
    assert [rsv for rsv, _ in frames] == [RSV1, 0, 0]


# -- message transform -------------------------------------------------------------------------------


@pytest.mark.parametrize("client_nct", [False, True])
@pytest.mark.parametrize("server_nct", [False, True])
def test_round_trip_both_directions(client_nct: bool, server_nct: bool) -> None:
    cext, sext, _ = pair(
        PerMessageDeflate(
            client_no_context_takeover=client_nct, server_no_context_takeover=server_nct, compress_threshold=0
        )
    )
    messages = [JSON, b"", JSON, os.urandom(3000), JSON * 50, b"a", JSON]
    for message in messages:
        assert receive(sext, send(cext, message)) == message
        assert receive(cext, send(sext, message)) == message


def test_context_takeover_shrinks_repeated_messages() -> None:
    keep = deflate_ext()
    reset = deflate_ext(send_no_context_takeover=True)
    first_keep = send(keep, JSON)[0][1]
    first_reset = send(reset, JSON)[0][1]
    assert first_keep == first_reset
    second_keep = send(keep, JSON)[0][1]
    second_reset = send(reset, JSON)[0][1]
    assert len(second_keep) < len(first_keep) // 4  # mostly one back-reference into the window
    assert second_reset == first_reset  # an empty window again (RFC 7692 §7.1.1)
    assert reset._compressor is None and keep._compressor is not None


def test_receiver_keeps_or_resets_the_window() -> None:
    sender = deflate_ext()
    keep = deflate_ext()
    reset = deflate_ext(recv_no_context_takeover=True)
    first, second = send(sender, JSON), send(sender, JSON)
    assert receive(keep, first) == JSON and receive(keep, second) == JSON
    assert receive(reset, first) == JSON
    assert reset._decompressor is None  # freed between messages
    with pytest.raises(ExtensionError) as info:
        receive(reset, second)  # refers to the previous message's window, which was dropped
    assert info.value.code == 1007


def test_rfc7692_examples() -> None:
    ext = deflate_ext()
    # §7.2.3.1 one compressed block; §7.2.3.2 sharing the LZ77 window with the previous message.
    assert receive(ext, [(RSV1, bytes.fromhex("f248cdc9c90700"))]) == b"Hello"
    assert receive(ext, [(RSV1, bytes.fromhex("f200110000"))]) == b"Hello"
    # §7.2.3.3 a stored (uncompressed) DEFLATE block.
    assert receive(ext, [(RSV1, bytes.fromhex("000500faff48656c6c6f00"))]) == b"Hello"
    # §7.2.3.4 a block with BFINAL set, then the 0x00 of an empty stored block.
    assert receive(ext, [(RSV1, bytes.fromhex("f348cdc9c9070000"))]) == b"Hello"
    # §7.2.3.5 two DEFLATE blocks in one message.
    assert receive(ext, [(RSV1, bytes.fromhex("f24805000000ffffcac9c90700"))]) == b"Hello"
    # §7.2.3.1 fragmented: "Hel" + "lo" as two frames.
    assert (
        receive(deflate_ext(), [(RSV1, bytes.fromhex("f248cd")), (0, bytes.fromhex("c9c90700"))]) == b"Hello"
    )


def test_encode_matches_rfc_examples() -> None:
    ext = deflate_ext(compress_level=6)
    assert send(ext, b"Hello") == [(RSV1, bytes.fromhex("f248cdc9c90700"))]  # §7.2.3.1
    assert send(ext, b"Hello") == [(RSV1, bytes.fromhex("f200110000"))]  # §7.2.3.2


def test_empty_message_and_empty_fragments() -> None:
    ext = deflate_ext()
    # RFC 7692 §7.2.3.6: an empty message compresses to the single octet 0x00.
    assert send(ext, b"") == [(RSV1, b"\x00")]
    frames = send(ext, b"abcabc", sizes=[6])  # an empty final fragment after a full one
    assert frames[1][0] == 0 and frames[1][1] in (b"\x00", b"")
    assert receive(deflate_ext(), send(deflate_ext(), b"")) == b""
    sender, receiver = deflate_ext(), deflate_ext()
    for sizes in ([0, 0, 3], [3, 0], [0]):
        assert receive(receiver, send(sender, b"abcdef", sizes=sizes)) == b"abcdef"


def test_empty_compressed_payload_is_an_empty_message() -> None:
    # Not what a compliant sender emits (0x00, §7.2.3.6), but it must not derail the next message.
    sender, receiver = deflate_ext(), deflate_ext()
    assert receive(receiver, [(RSV1, b"")]) == b""
    assert receive(receiver, [(RSV1, b""), (0, b""), (0, b"")]) == b""
    assert receive(receiver, send(sender, JSON)) == JSON
    assert receive(receiver, [(RSV1, b"")]) == b""
    assert receive(receiver, send(sender, JSON)) == JSON


@pytest.mark.parametrize("size", [10, 2040, 2048, 2049, 5000])
def test_last_piece_sizes_around_the_single_call_path(size: int) -> None:
    data = os.urandom(size // 2) * 2
    sender, receiver = deflate_ext(compress_level=0), deflate_ext()
    frames = send(sender, data)
    assert receive(receiver, frames, max_size=len(data)) == data
    with pytest.raises(ExtensionError):
        receive(deflate_ext(), send(deflate_ext(compress_level=0), data), max_size=len(data) - 1)


def test_fragmented_send_keeps_tail_until_the_end() -> None:
    ext = deflate_ext()
    frames = send(ext, JSON * 20, sizes=[500, 500])
    assert len(frames) == 3
    # RFC 7692 §7.2.1: every fragment is sync-flushed; only the message end loses its 00 00 ff ff.
    assert frames[0][1].endswith(TAIL) and frames[1][1].endswith(TAIL)
    assert not frames[2][1].endswith(TAIL)
    whole = b"".join(payload for _, payload in frames) + TAIL
    assert zlib.decompressobj(-15).decompress(whole) == JSON * 20


def test_streaming_decode_in_arbitrary_pieces() -> None:
    message = os.urandom(1000) + JSON * 100
    frames = send(deflate_ext(), message, sizes=[700, 1])
    ext = deflate_ext()
    out: list[bytes] = []
    for i, (rsv, payload) in enumerate(frames):
        if i == 0:
            assert ext.start_inbound(rsv)
        last_frame = i == len(frames) - 1
        for j in range(len(payload)):  # one byte at a time
            remaining = len(message) - sum(map(len, out))
            out.append(ext.decode(payload[j : j + 1], last_frame and j == len(payload) - 1, remaining))
        if not payload:
            out.append(ext.decode(b"", last_frame, len(message) - sum(map(len, out))))
    assert b"".join(out) == message


def test_uncompressed_messages_pass_through() -> None:
    ext = deflate_ext()
    assert not ext.start_inbound(0)
    assert ext.decode(b"raw", True, 10) == b"raw"
    # Interleaved with compressed ones, the window is unaffected.
    sender = deflate_ext()
    assert receive(ext, send(sender, JSON)) == JSON
    assert receive(ext, [(0, b"plain")]) == b"plain"
    assert receive(ext, send(sender, JSON)) == JSON


def test_threshold_and_per_message_choice() -> None:
    ext = deflate_ext(compress_threshold=64)
    assert send(ext, b"x" * 63) == [(0, b"x" * 63)]
    assert send(ext, b"x" * 64)[0][0] == RSV1
    assert send(ext, b"x" * 10, compress=True)[0][0] == RSV1
    assert send(ext, JSON * 10, compress=False) == [(0, JSON * 10)]
    # A fragmented message is compressed even if its first frame is small (size unknown).
    frames = send(ext, JSON, sizes=[5])
    assert [rsv for rsv, _ in frames] == [RSV1, 0]
    # compress=False holds for every frame of the message.
    frames = send(ext, JSON * 3, sizes=[50, 50], compress=False)
    assert frames == [(0, (JSON * 3)[:50]), (0, (JSON * 3)[50:100]), (0, (JSON * 3)[100:])]
    assert receive(deflate_ext(), frames) == JSON * 3


def test_default_threshold_sends_small_messages_plain() -> None:
    cext, sext, _ = pair(PerMessageDeflate())
    assert send(cext, b"hi") == [(0, b"hi")]
    assert send(cext, JSON * 2)[0][0] == RSV1


@pytest.mark.parametrize("level", [0, 1, 9, -1])
@pytest.mark.parametrize("mem_level", [1, 5, 9])
def test_level_and_mem_level(level: int, mem_level: int) -> None:
    cext, sext, _ = pair(PerMessageDeflate(compress_level=level, mem_level=mem_level, compress_threshold=0))
    for message in (JSON, JSON * 100):
        assert receive(sext, send(cext, message)) == message


# -- window bits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(8, 16))
def test_every_window_size_round_trips(bits: int) -> None:
    cext, sext, response = pair(
        PerMessageDeflate(server_max_window_bits=bits, client_max_window_bits=bits, compress_threshold=0),
        PerMessageDeflate(client_max_window_bits=bits, compress_threshold=0),
    )
    assert f"server_max_window_bits={bits}" in response and f"client_max_window_bits={bits}" in response
    data = os.urandom(200) * 30 + JSON * 50
    for _ in range(3):
        assert receive(sext, send(cext, data)) == data
        assert receive(cext, send(sext, data)) == data


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.integers(1, 60), st.integers(1, 9))
def test_wbits9_output_fits_a_256_byte_window(unit: bytes, repeat: int, level: int) -> None:
    # zlib refuses raw wbits=8, so window 8 is sent with wbits=9: its distances stay <= 250.
    data = unit * repeat
    c = zlib.compressobj(level, zlib.DEFLATED, -9)
    stream = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert zlib.decompressobj(-8).decompress(stream) == data


def test_window_is_what_was_agreed_across_messages() -> None:
    # A peer that agreed to a 512-byte window but refers 1000 bytes back into its previous message
    # sends undecodable data. (Within one inflate call zlib is lenient; across messages it cannot be.)
    block = os.urandom(1000)
    sender = deflate_ext(send_window_bits=15)
    first, second = send(sender, block), send(sender, block)
    assert len(second[0][1]) < 100
    strict = deflate_ext(recv_window_bits=9)
    assert receive(strict, first) == block
    with pytest.raises(ExtensionError) as info:
        receive(strict, second)
    assert info.value.code == 1007
    wide = deflate_ext(recv_window_bits=15)
    assert receive(wide, first) == block and receive(wide, second) == block


# -- bounds and bad data -----------------------------------------------------------------------------


def make_bomb(gib: int = 1) -> bytes:
    """A raw deflate stream (tail stripped) of ~1 MiB that inflates to ``gib`` GiB of zeros."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = b"\0" * 2**20
    first = c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)
    steady = c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)
    assert steady == c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)  # each further MiB is the same bytes
    return (first + steady * (1024 * gib - 1))[:-4]


def test_zip_bomb_costs_o_limit_memory() -> None:
    bomb = make_bomb()
    assert len(bomb) < 2 * 2**20
    limit = 2**20
    ext = deflate_ext()
    assert ext.start_inbound(RSV1)
    tracemalloc.start()
    try:
        with pytest.raises(ExtensionError) as info:
            ext.decode(bomb, True, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009
    assert peak < 8 * limit  # never anywhere near the 1 GiB it would inflate to


def test_zip_bomb_streamed_in_frames_stops_at_the_limit() -> None:
    bomb = make_bomb()
    ext = deflate_ext()
    assert ext.start_inbound(RSV1)
    limit = 5 * 2**20
    produced = 0
    with pytest.raises(ExtensionError) as info:
        for i in range(0, len(bomb), 10_000):  # 10 KB frames
            produced += len(ext.decode(bomb[i : i + 10_000], i + 10_000 >= len(bomb), limit - produced))
    assert info.value.code == 1009
    assert produced <= limit


@pytest.mark.parametrize("pieces", [1, 3, 50])
def test_max_size_is_exact(pieces: int) -> None:
    message = JSON * 40
    payload = send(deflate_ext(), message)[0][1]
    step = -(-len(payload) // pieces)

    def run(limit: int) -> bytes:
        ext = deflate_ext()
        assert ext.start_inbound(RSV1)
        chunks = [payload[i : i + step] for i in range(0, len(payload), step)]
        out = b""
        for k, chunk in enumerate(chunks):
            out += ext.decode(chunk, k == len(chunks) - 1, limit - len(out))
        return out

    assert run(len(message)) == message
    with pytest.raises(ExtensionError) as info:
        run(len(message) - 1)
    assert info.value.code == 1009


def test_max_size_is_a_remaining_budget_and_never_negative() -> None:
    payload = send(deflate_ext(), JSON)[0][1]
    ext = deflate_ext()
    assert ext.start_inbound(RSV1)
    assert ext.decode(payload, True, len(JSON)) == JSON
    ext = deflate_ext()
    assert ext.start_inbound(RSV1)
    with pytest.raises(ExtensionError) as info:
        ext.decode(payload, True, -5)  # a caller that overshot: still 1009, not a zlib ValueError
    assert info.value.code == 1009


def test_max_size_counts_per_message_and_none_is_unbounded() -> None:
    sender, receiver = deflate_ext(), deflate_ext()
    for _ in range(5):
        assert receive(receiver, send(sender, JSON), max_size=len(JSON)) == JSON
    assert receive(receiver, send(sender, JSON * 1000), max_size=None) == JSON * 1000


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff\xff\xff",  # reserved block type 11
        bytes.fromhex("000500faff48656c6c6f00")[:1] + b"\x01\x00\x01\x00",  # stored block LEN/NLEN mismatch
        bytes.fromhex("f348cdc9c90700") + b"garbage",  # data after a BFINAL block
    ],
)
def test_invalid_compressed_data_is_1007(payload: bytes) -> None:
    with pytest.raises(ExtensionError) as info:
        receive(deflate_ext(), [(RSV1, payload)])
    assert info.value.code == 1007


def test_many_tiny_final_blocks_cost_linear_time() -> None:
    # b"\x03\x00" is an empty fixed-Huffman block with BFINAL set: each would start a new stream.
    ext = deflate_ext()
    assert ext.start_inbound(RSV1)
    with pytest.raises(ExtensionError) as info:
        ext.decode(b"\x03\x00" * 500_000, True, 2**20)
    assert info.value.code == 1007
    ext = deflate_ext()
    assert ext.start_inbound(RSV1)
    for _ in range(1000):  # one per frame is fine
        assert ext.decode(b"\x03\x00", False, 2**20) == b""
    assert ext.decode(b"", True, 2**20) == b""


def test_data_after_bfinal_in_a_later_frame_is_1007() -> None:
    with pytest.raises(ExtensionError) as info:
        receive(deflate_ext(), [(RSV1, bytes.fromhex("f348cdc9c90700")), (0, b"\x00\x00"), (0, b"xyz")])
    assert info.value.code == 1007


def test_blocks_after_bfinal_start_a_new_stream() -> None:
    # RFC 7692 §7.2.1: "The next DEFLATE block follows the padded data if any" - e.g. a sender that
    # flushes every fragment with a final block.
    hello_final = bytes.fromhex("f348cdc9c90700")
    with pytest.raises(ExtensionError) as info:  # two final blocks in one piece: refused (cost bound)
        receive(deflate_ext(), [(RSV1, hello_final + hello_final + hello_final)])
    assert info.value.code == 1007
    assert receive(deflate_ext(), [(RSV1, hello_final + hello_final + b"\x00")]) == b"HelloHello"
    assert receive(deflate_ext(), [(RSV1, hello_final), (0, hello_final), (0, b"")]) == b"HelloHello"
    assert receive(deflate_ext(), [(RSV1, hello_final + b"\x01")]) == b"Hello"  # + a final empty stored block
    ext = deflate_ext()
    assert ext.start_inbound(RSV1)
    assert ext.decode(hello_final, False, 100) == b"Hello"
    assert ext.decode(b"\x00", False, 100) == b""  # could be the start of the tail: kept aside
    with pytest.raises(ExtensionError) as info:
        ext.decode(hello_final, True, 100)  # not a tail: a stored block header "00" with LEN f3 48...
    assert info.value.code == 1007
    ext = deflate_ext()
    assert ext.start_inbound(RSV1)
    assert ext.decode(hello_final, False, 100) == b"Hello"
    with pytest.raises(ExtensionError) as info:
        ext.decode(b"\x00" * 3000, True, 100)  # a stored block with LEN 0 and NLEN 0: invalid
    assert info.value.code == 1007
    # After a message that ended with a final block, the next message is a new stream.
    ext = deflate_ext()
    assert receive(ext, [(RSV1, bytes.fromhex("f348cdc9c9070000"))]) == b"Hello"
    assert receive(ext, [(RSV1, bytes.fromhex("f248cdc9c90700"))]) == b"Hello"


# -- memory: lazy zlib objects -----------------------------------------------------------------------


def test_zlib_objects_are_created_lazily_and_freed_without_takeover() -> None:
    cext, sext, _ = pair(
        PerMessageDeflate(client_no_context_takeover=True, compress_threshold=0),
        PerMessageDeflate(compress_threshold=0),
    )
    assert isinstance(cext, _DeflateExtension) and isinstance(sext, _DeflateExtension)
    assert cext._compressor is None and sext._decompressor is None
    frames = send(cext, JSON, sizes=[10])
    assert cext._compressor is None  # freed as soon as the message is complete
    assert receive(sext, frames) == JSON
    assert sext._decompressor is None
    assert receive(cext, send(sext, JSON)) == JSON
    assert sext._compressor is not None and cext._decompressor is not None  # takeover: kept


def test_release_frees_both_zlib_objects_mid_message() -> None:
    cext, sext, _ = pair(PerMessageDeflate(compress_threshold=0), PerMessageDeflate(compress_threshold=0))
    assert isinstance(cext, _DeflateExtension) and isinstance(sext, _DeflateExtension)
    assert receive(cext, send(sext, JSON)) == JSON
    rsv, payload = cext.encode(JSON, True, False, None)  # a message half sent...
    assert sext.start_inbound(rsv) and sext.decode(payload, False, None)  # ...and half received
    assert cext._compressor is not None and sext._decompressor is not None
    cext.release()
    sext.release()
    for ext in (cext, sext):
        assert ext._compressor is None and ext._decompressor is None


def test_decodes_is_a_question_without_side_effects() -> None:
    _, sext, _ = pair(PerMessageDeflate(), PerMessageDeflate())
    assert isinstance(sext, _DeflateExtension)
    # RFC 7692 §6: only messages whose first frame has RSV1 are compressed
    assert sext.decodes(RSV1) and not sext.decodes(0)
    assert sext._decompressor is None and not sext._in_compressed  # nothing was prepared


# -- property: random messages, random parameters ----------------------------------------------------

bits_or_none = st.one_of(st.none(), st.integers(8, 15))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    client=st.fixed_dictionaries(
        {
            "client_no_context_takeover": st.booleans(),
            "server_no_context_takeover": st.booleans(),
            "client_max_window_bits": st.one_of(st.none(), st.just(True), st.integers(8, 15)),
            "server_max_window_bits": bits_or_none,
            "compress_level": st.integers(0, 9),
            "mem_level": st.integers(1, 9),
            "compress_threshold": st.integers(0, 200),
        }
    ),
    server=st.fixed_dictionaries(
        {
            "client_no_context_takeover": st.booleans(),
            "server_no_context_takeover": st.booleans(),
            "client_max_window_bits": bits_or_none,
            "server_max_window_bits": bits_or_none,
            "compress_level": st.integers(0, 9),
        }
    ),
    messages=st.lists(
        st.tuples(
            st.one_of(
                st.binary(max_size=2000),
                st.text(max_size=500).map(str.encode),
                st.binary(min_size=1, max_size=50).flatmap(
                    lambda b: st.integers(1, 200).map(lambda n: b * n)
                ),
            ),
            st.lists(st.integers(0, 700), max_size=4),
            st.sampled_from([None, True, False]),
            st.booleans(),
        ),
        max_size=8,
    ),
)
def test_random_round_trips(
    client: dict[str, object],
    server: dict[str, object],
    messages: list[tuple[bytes, list[int], bool | None, bool]],
) -> None:
    cext, sext, _ = pair(PerMessageDeflate(**client), PerMessageDeflate(**server))  # type: ignore[arg-type]
    for message, sizes, compress, to_server in messages:
        src, dst = (cext, sext) if to_server else (sext, cext)
        frames = send(src, message, sizes=sizes, compress=compress)
        if compress is False:
            assert all(rsv == 0 for rsv, _ in frames)
        assert receive(dst, frames, max_size=len(message)) == message


@settings(max_examples=300, deadline=None)
@given(
    garbage=st.lists(st.binary(max_size=200), min_size=1, max_size=5),
    prefix=st.sampled_from([b"", bytes.fromhex("f348cdc9c90700"), bytes.fromhex("f248cdc9c90700")]),
    limit=st.one_of(st.none(), st.integers(0, 5000)),
    bits=st.integers(8, 15),
)
def test_random_payloads_only_ever_raise_extension_errors(
    garbage: list[bytes], prefix: bytes, limit: int | None, bits: int
) -> None:
    ext = deflate_ext(recv_window_bits=bits)
    pieces = [prefix + garbage[0], *garbage[1:]]
    for _ in range(2):  # twice: the state left by the first message must not break the second
        assert ext.start_inbound(RSV1)
        produced = 0
        try:
            for k, piece in enumerate(pieces):
                remaining = None if limit is None else limit - produced
                produced += len(ext.decode(piece, k == len(pieces) - 1, remaining))
        except ExtensionError as exc:
            assert exc.code in (1007, 1009)
            return
        assert limit is None or produced <= limit
