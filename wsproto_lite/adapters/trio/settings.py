"""Per-connection limits and timers of the trio adapter, and the types its modules share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from wsproto_lite import DEFAULT_MAX_MESSAGE_SIZE, Config, PerMessageDeflate

from ...server.keepalive import CLOSE_TIMEOUT, PING_INTERVAL, PING_TIMEOUT

Message = str | bytes
Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Settings:
    """Per-connection limits and timers; every entry point takes them as keyword arguments."""

    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE  # bytes of one message, decompressed; over: 1009
    message_queue_size: int = 1  # received messages waiting for get_message(); full: stop reading
    receive_buffer_size: int = 2**16  # bytes asked of one receive_some()
    write_limit: int = 2**16  # bytes waiting for the stream before senders wait
    compression: bool = True  # offer / accept permessage-deflate
    ping_interval: float | None = PING_INTERVAL  # keepalive: ping this often (seconds; None: off) ...
    ping_timeout: float | None = PING_TIMEOUT  # ... and close 1011 when its pong takes longer than this
    connect_timeout: float = 60  # TCP, TLS and the opening handshake
    disconnect_timeout: float = CLOSE_TIMEOUT  # the closing handshake, then flushing and closing the stream

    def __post_init__(self) -> None:
        if self.message_queue_size < 1:
            raise ValueError("message_queue_size must be at least 1")

    def core_config(self) -> Config:
        return Config(max_message_size=self.max_message_size)

    def extensions(self) -> list[PerMessageDeflate]:
        return [PerMessageDeflate()] if self.compression else []


class Options(TypedDict, total=False):
    """The keyword arguments that build :class:`Settings` (for type checkers)."""

    max_message_size: int | None
    message_queue_size: int
    receive_buffer_size: int
    write_limit: int
    compression: bool
    ping_interval: float | None
    ping_timeout: float | None
    connect_timeout: float
    disconnect_timeout: float
