"""wsproto_lite.server.trace: header descriptions and the incremental two-direction decoder."""

from __future__ import annotations

import struct

from wsproto_lite.server.trace import FrameTracer, describe_header


def test_describe_header_fields() -> None:
    assert describe_header(b"\x81\x05") == "FIN=1 RSV1=0 RSV2=0 RSV3=0 opcode=0x1 TEXT MASK=0 payload=5 bytes"
    line = describe_header(b"\x42\xfe\x01\x00\xaa\xbb\xcc\xdd")
    assert "FIN=0 RSV1=1" in line and "compressed" in line and "BINARY" in line
    assert "MASK=1 key=aabbccdd payload=256 bytes (16-bit extended length)" in line
    huge = describe_header(b"\x82\x7f" + struct.pack("!Q", 2**63 - 1))
    assert f"payload={2**63 - 1} bytes (64-bit extended length)" in huge
    assert "RESERVED-0x3" in describe_header(b"\x83\x00")


def test_tracer_decodes_split_stream() -> None:
    lines: list[str] = []
    tracer = FrameTracer("peer", lines.append, server_side=True)
    key = b"\x01\x02\x03\x04"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(b"Hello"))
    stream = (
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        + b"\x81\x85"
        + key
        + masked
        + b"\x89\x80"
        + key  # empty ping
        + b"\x88\x82"
        + key
        + bytes(b ^ key[i % 4] for i, b in enumerate(struct.pack("!H", 1000)))
    )
    for i in range(len(stream)):  # byte by byte: the decoder must not care how data is split
        tracer.feed(False, stream[i : i + 1])
    text = "\n".join(lines)
    assert "HTTP GET / HTTP/1.1" in text
    assert "opcode=0x1 TEXT MASK=1 key=01020304 payload=5 bytes" in text
    assert "payload (unmasked for display): 'Hello'" in text
    assert "PING" in text and "(empty)" in text
    assert "close code=1000" in text
    assert all(line.startswith("peer <== recv") for line in lines)


def test_tracer_keeps_only_a_preview_and_stops_after_refusal() -> None:
    lines: list[str] = []
    tracer = FrameTracer("c", lines.append, server_side=False)
    tracer.feed(True, b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + b"\x82\x7e\x10\x00" + b"\x00" * 4096)
    assert "(+4056 bytes)" in lines[-1]
    refused: list[str] = []
    tracer2 = FrameTracer("c", refused.append, server_side=False)
    tracer2.feed(False, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\n\x81\x05x")
    assert len(refused) == 2 and "403" in refused[0]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from wsproto_lite import encode_frame  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(
    frames=st.lists(
        st.tuples(st.sampled_from([0x1, 0x2, 0x9, 0xA]), st.binary(max_size=300), st.booleans()), max_size=6
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8),
)
def test_any_split_gives_the_same_trace(frames: list[tuple[int, bytes, bool]], cuts: list[int]) -> None:
    stream = b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + b"".join(
        encode_frame(op, payload[:125] if op >= 8 else payload, mask=b"abcd" if masked else None)
        for op, payload, masked in frames
    )
    whole: list[str] = []
    FrameTracer("x", whole.append, server_side=False).feed(False, stream)
    pieces: list[str] = []
    tracer = FrameTracer("x", pieces.append, server_side=False)
    last = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
        tracer.feed(False, stream[last:cut])
        last = cut
    assert pieces == whole
    assert sum("payload=" in line for line in whole) == len(frames)
