"""An independent WebSocket frame builder/parser (RFC 6455), used to make benchmark inputs.

It deliberately depends on no WebSocket library, so every implementation is fed identical bytes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import struct
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_ALPHABET = b'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 {}":,'
_TEXT_TABLE = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))


def mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (masking and unmasking are the same)."""
    if not data:
        return b""
    n = len(data)
    repeated = key * (n // 4) + key[: n % 4]
    return (int.from_bytes(data, sys.byteorder) ^ int.from_bytes(repeated, sys.byteorder)).to_bytes(
        n, sys.byteorder
    )


def header(opcode: int, length: int, *, fin: bool = True, masked: bool = False, rsv: int = 0) -> bytes:
    """The frame header (without the masking key) for a payload of ``length`` bytes."""
    b0 = (0x80 if fin else 0) | rsv | opcode
    mbit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", b0, mbit | length)
    if length < 65536:
        return struct.pack("!BBH", b0, mbit | 126, length)
    return struct.pack("!BBQ", b0, mbit | 127, length)


def build_frame(opcode: int, payload: bytes, *, key: bytes | None = None, fin: bool = True) -> bytes:
    """One frame; masked (client to server) when ``key`` is given."""
    if key is None:
        return header(opcode, len(payload), fin=fin) + payload
    return header(opcode, len(payload), fin=fin, masked=True) + key + mask(payload, key)


def frame_overhead(length: int, masked: bool) -> int:
    """Header bytes of one frame carrying ``length`` payload bytes."""
    return len(header(OP_BINARY, length)) + (4 if masked else 0)


def make_payload(size: int, kind: str, seed: int = 1) -> str | bytes:
    """A deterministic payload of exactly ``size`` bytes: ASCII JSON-ish text, or random bytes."""
    raw = random.Random(seed * 1_000_003 + size).randbytes(size)
    if kind == "text":
        return raw.translate(_TEXT_TABLE).decode("ascii")
    return raw


def client_stream(payload: str | bytes, count: int, seed: int = 7) -> bytes:
    """``count`` masked client frames carrying ``payload``, each with its own random key."""
    rng = random.Random(seed)
    data = payload.encode() if isinstance(payload, str) else payload
    opcode = OP_TEXT if isinstance(payload, str) else OP_BINARY
    head = header(opcode, len(data), masked=True)
    keys = [rng.randbytes(4) for _ in range(min(count, 64))]
    frames = [head + k + mask(data, k) for k in keys]
    return b"".join(frames[i % len(frames)] for i in range(count))


def chunked(data: bytes, size: int = 65536) -> list[bytes]:
    """Split ``data`` into ``size``-byte chunks, as a socket would deliver them."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def parse_frames(data: bytes) -> tuple[list[tuple[int, bool, bytes]], int]:
    """Parse complete frames (unmasking if needed); returns ``([(opcode, fin, payload)], consumed)``."""
    out: list[tuple[int, bool, bytes]] = []
    pos, n = 0, len(data)
    while n - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        length, p = b1 & 0x7F, pos + 2
        if length == 126:
            if n - p < 2:
                break
            (length,) = struct.unpack_from("!H", data, p)
            p += 2
        elif length == 127:
            if n - p < 8:
                break
            (length,) = struct.unpack_from("!Q", data, p)
            p += 8
        key = None
        if b1 & 0x80:
            if n - p < 4:
                break
            key = data[p : p + 4]
            p += 4
        if n - p < length:
            break
        payload = bytes(data[p : p + length])
        if key is not None:
            payload = mask(payload, key)
        out.append((b0 & 0x0F, bool(b0 & 0x80), payload))
        pos = p + length
    return out, pos


def new_key() -> str:
    """A fresh Sec-WebSocket-Key."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept value matching ``key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def handshake_request(host: str, path: str = "/", key: str | None = None) -> tuple[bytes, str]:
    """A browser-like upgrade request without extensions; returns ``(request, key)``."""
    key = key or new_key()
    req = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Origin: http://localhost\r\n"
        "User-Agent: wsproto-lite-bench\r\n"
        "\r\n"
    ).encode()
    return req, key


def check_response(head: bytes, key: str) -> None:
    """Raise ``ValueError`` unless ``head`` is a 101 response accepting ``key``."""
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101"):
        raise ValueError(f"handshake failed: {lines[0]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if headers.get("sec-websocket-accept") != accept_for(key):
        raise ValueError("bad Sec-WebSocket-Accept")
    if "sec-websocket-extensions" in headers:
        raise ValueError(f"unexpected extensions: {headers['sec-websocket-extensions']}")
