"""Frames built by hand for the tests, independently of the code under test (RFC 6455 §5.2)."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from wsproto_lite._config import Config
from wsproto_lite._errors import RemoteProtocolError
from wsproto_lite._reader import MessageReader

MASK = b"\x37\xfa\x21\x3d"


def frame(
    opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, mask: bytes | None = MASK
) -> bytes:
    """A frame as a client (masked, the default) or a server (``mask=None``) sends it."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(data: str, **kw: object) -> bytes:
    return frame(0x1, data.encode(), **kw)  # type: ignore[arg-type]


def close(code: int | None = 1000, reason: bytes = b"", **kw: object) -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(0x8, payload, **kw)  # type: ignore[arg-type]


def read_in_chunks(data: bytes, cuts: list[int], config: Config, *, server: bool) -> list[object]:
    """The events of a reader fed ``data`` cut at ``cuts``, then ("error", code) if it raised."""
    reader = MessageReader(config, expect_masked=server)
    out: list[object] = []
    bounds = [0, *sorted(cuts), len(data)]
    for i in range(len(bounds) - 1):
        reader.feed(data[bounds[i] : bounds[i + 1]])
        try:
            while (event := reader.next_event()) is not None:
                out.append(event)
        except RemoteProtocolError as exc:
            return [*out, ("error", exc.code)]
    return out


#: Client frames, valid and not (bad UTF-8, fragments, RSV bits, unmasked...): fast path vs general path.
FRAMES = st.one_of(
    st.text(max_size=30).map(lambda t: frame(0x1, t.encode())),
    st.binary(max_size=130).map(lambda b: frame(0x2, b)),
    st.binary(min_size=500, max_size=700).map(lambda b: frame(0x2, b)),
    st.text(min_size=200, max_size=300).map(lambda t: frame(0x1, t.encode())),
    st.binary(max_size=10).map(lambda b: frame(0x1, b)),  # often invalid UTF-8
    st.binary(max_size=10).map(lambda b: frame(0x9, b)),
    st.binary(max_size=10).map(lambda b: frame(0x2, b, fin=False)),
    st.binary(max_size=10).map(lambda b: frame(0x0, b)),
    st.binary(max_size=10).map(lambda b: frame(0x1, b, rsv=0x40)),
    st.binary(max_size=10).map(lambda b: frame(0x2, b, mask=None)),
)
