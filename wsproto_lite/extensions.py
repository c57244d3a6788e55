"""The extension hook (RFC 6455 §9): how permessage-deflate and friends plug into the core.

An :class:`ExtensionFactory` is what the application passes to a connection; it takes part in the opening
handshake (the client offers, the server negotiates) and yields one :class:`Extension` object per
connection. The frame layer then calls the extension for every data message, without knowing what it
does: which RSV bits it may see, how an inbound payload is decoded, how an outbound one is encoded.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

from ._errors import ExtensionError

__all__ = ["Extension", "ExtensionError", "ExtensionFactory", "Params"]

#: Parsed parameters of one extension offer or response: ``[(name, value or None), ...]`` in order,
#: with quoted-string values already unquoted (RFC 6455 §9.1).
Params = list[tuple[str, "str | None"]]


class Extension(abc.ABC):
    """One negotiated extension on one connection."""

    #: The registered extension token, e.g. ``"permessage-deflate"``.
    name: str
    #: The RSV bits (as in the first header byte: 0x40, 0x20, 0x10) this extension owns.
    rsv_mask: int

    @abc.abstractmethod
    def rsv_ok(self, opcode: int, rsv: int, first_frame: bool) -> bool:
        """May a frame with this opcode carry these RSV bits (``rsv & rsv_mask``)?

        ``first_frame`` is true for a control frame and for the first frame of a data message.
        """

    @abc.abstractmethod
    def start_inbound(self, rsv: int) -> bool:
        """A data message starts with these RSV bits: will :meth:`decode` transform it?"""

    def decodes(self, rsv: int) -> bool:
        """Would a data message starting with these RSV bits be decoded? A question, without side effects.

        The reader asks it once per connection with ``rsv=0`` to know whether plain frames may skip the
        extension (and take its fast path). The default answers True (always ask :meth:`decode`), which
        is correct for any extension; override it to say which messages you leave alone.
        """
        return True

    def release(self) -> None:  # noqa: B027 - optional: an extension without state needs no override
        """The connection reached CLOSED: drop per-connection state (e.g. zlib objects). Default: nothing.

        No other method is called afterwards.
        """

    @abc.abstractmethod
    def decode(self, data: bytes, fin: bool, max_size: int | None) -> bytes:
        """Decode the next piece of an inbound message claimed by :meth:`start_inbound`.

        ``fin`` is true for the last piece of the message. ``max_size`` is how many more bytes the
        decoded message may grow by (None: unbounded): when this piece would decode to more, raise
        :class:`ExtensionError` with code 1009 before producing more than ``max_size + 1`` bytes (so a
        small input that inflates hugely costs O(limit)); raise it with 1007 for undecodable data.
        """

    def decode_pieces(self, data: bytes, fin: bool, max_size: int | None) -> Iterable[bytes]:
        """:meth:`decode` in pieces, each produced after the previous one was taken: what the reader uses
        to assemble a whole message, copying every piece into the message as it comes, so an extension
        that decodes incrementally (permessage-deflate) never holds a second copy of a large message.
        The same rules as :meth:`decode`; the default yields its result as one piece.
        """
        return (self.decode(data, fin, max_size),)

    @abc.abstractmethod
    def encode(self, data: bytes, first_frame: bool, fin: bool, compress: bool | None) -> tuple[int, bytes]:
        """Encode one outbound data frame payload; return the RSV bits to set and the payload.

        ``compress`` is the application's per-message wish (None: the extension decides). The choice made
        on the first frame of a message holds for all of its frames.
        """


class ExtensionFactory(abc.ABC):
    """What an application passes in ``extensions=[...]``; negotiates one :class:`Extension`."""

    name: str

    @abc.abstractmethod
    def offer(self) -> str:
        """Client: the ``Sec-WebSocket-Extensions`` value offering this extension (name included)."""

    @abc.abstractmethod
    def accept_response(self, params: Params) -> Extension:
        """Client: the server accepted with these parameters; raise :class:`ExtensionError` if invalid."""

    @abc.abstractmethod
    def negotiate(self, offers: list[Params]) -> tuple[str, Extension] | None:
        """Server: the client's offers for this extension, in preference order.

        Return the response header value (name included) and the extension, or None to decline.
        """
