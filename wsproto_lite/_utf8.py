"""Incremental UTF-8 decoding that fails at the first invalid byte (RFC 6455 §8.1, RFC 3629)."""

from __future__ import annotations

import codecs

from ._errors import CloseCode, RemoteProtocolError

_IncrementalDecoder = codecs.getincrementaldecoder("utf-8")


class Utf8Decoder:
    """Decode a text message piece by piece, raising 1007 as soon as an invalid byte is seen.

    CPython's incremental decoder already rejects an invalid byte when it arrives, with one exception:
    it holds back ``ED A0``-``ED BF`` (the start of an encoded UTF-16 surrogate) until the sequence is
    complete. We check the held-back bytes ourselves so that case fails at its second byte too.
    """

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _IncrementalDecoder()

    def decode(self, data: bytes, final: bool = False) -> str:
        """Return the text decoded so far; raise RemoteProtocolError(1007) on invalid UTF-8."""
        try:
            text: str = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            # §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds that the byte
            # stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
            # Connection_."
            raise RemoteProtocolError(f"invalid UTF-8: {exc.reason}", CloseCode.INVALID_DATA) from None
        if not final:
            pending = self._decoder.getstate()[0]
            # RFC 3629 §3: ED must be followed by 80-9F (A0-BF would encode a surrogate).
            if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise RemoteProtocolError("invalid UTF-8: surrogate", CloseCode.INVALID_DATA)
        return text


def decode_utf8(data: bytes) -> str:
    """Decode a complete UTF-8 payload, raising RemoteProtocolError(1007) if it is invalid (§8.1)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"invalid UTF-8: {exc.reason}", CloseCode.INVALID_DATA) from None
