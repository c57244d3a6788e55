"""Limits and switches of a connection, with safe defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["Config", "DEFAULT_MAX_MESSAGE_SIZE"]

DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 2**20
"""Bytes in one message, decompressed (16 MiB, uvicorn's ``ws_max_size`` default too): the one default of
the message limit in every layer, whatever a layer calls it (``Config.max_message_size``, ``Options``,
the asyncio adapter's ``max_size``, the trio adapter's ``max_message_size``);
see the table in ``wsproto_lite/server/README.md`` (the hub reads smaller frames: its commands are small)."""


@dataclass(frozen=True)
class Config:
    """Per-connection settings. Every limit guards memory against a hostile peer.

    - ``max_message_size``: bytes in one message (after decompression); over it: close 1009. None: no bound
      (only sensible with ``stream_messages``).
    - ``max_frame_size``: bytes in one frame's payload; over it: close 1009. None: ``max_message_size``.
    - ``max_fragments``: frames in one message; over it: close 1009. None: no bound. The default admits
      Autobahn's 4 MiB messages in 64-byte fragments (65 536 frames) while capping what a peer sending
      1-byte fragments costs in per-piece overhead (about 50 bytes each).
    - ``max_handshake_size``: bytes of the HTTP head (request or response); over it: 431 / failure.
    - ``max_headers``: header lines in the HTTP head; over it: 431 / failure.
    - ``max_http_body``: bytes of a plain HTTP request's body the server takes (413 over it), and of a
      rejecting response's body the client keeps.
    - ``http_error_body``: server, ``(status, reason) -> (content type, body)``: how the HTTP errors the
      core answers itself (a malformed handshake, a head or body over its limit) are worded; None (or a
      hook that raises): the reason as ``text/plain``.
    - ``stream_messages``: emit TextChunk/BinaryChunk as payload arrives instead of whole messages.
    - ``auto_pong``: answer each ping with a pong carrying the same payload (§5.5.2).
    """

    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    max_frame_size: int | None = None
    max_fragments: int | None = 100_000
    max_handshake_size: int = 65536
    max_headers: int = 128
    max_http_body: int = 65536
    http_error_body: Callable[[int, str], tuple[str, bytes]] | None = None
    stream_messages: bool = False
    auto_pong: bool = True

    def __post_init__(self) -> None:
        for name in ("max_message_size", "max_frame_size", "max_fragments"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None")

    @property
    def frame_limit(self) -> int | None:
        """The effective frame payload limit."""
        return self.max_frame_size if self.max_frame_size is not None else self.max_message_size
