"""wsproto-lite: a sans-IO WebSocket implementation (RFC 6455, RFC 7692).

Bytes in, events out, bytes to send out; no sockets, threads or clocks. See ``docs/core-api.md``.
"""

from ._close import MAX_CLOSE_REASON, fit_close_reason
from ._config import DEFAULT_MAX_MESSAGE_SIZE, Config
from ._connection import ClientConnection, Connection, PreparedMessage, ServerConnection, prepare_message
from ._errors import CloseCode, ExtensionError, LocalProtocolError, RemoteProtocolError
from ._events import (
    Accepted,
    BinaryChunk,
    BinaryMessage,
    CloseReceived,
    ConnectionClosed,
    Event,
    HTTPRequest,
    Ping,
    Pong,
    Rejected,
    Request,
    TextChunk,
    TextMessage,
)
from ._frames import FrameHeader, HeaderError, Opcode, apply_mask, encode_frame, parse_header
from ._speedups import speedups_enabled
from ._state import ConnectionState
from .extensions import Extension, ExtensionFactory

try:  # permessage-deflate lives in its own module, written alongside the core
    from ._deflate import PerMessageDeflate
except ImportError:  # pragma: no cover
    pass

__all__ = [
    "Accepted",
    "BinaryChunk",
    "BinaryMessage",
    "ClientConnection",
    "CloseCode",
    "CloseReceived",
    "Config",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Connection",
    "ConnectionClosed",
    "ConnectionState",
    "Event",
    "Extension",
    "ExtensionError",
    "ExtensionFactory",
    "FrameHeader",
    "HeaderError",
    "HTTPRequest",
    "MAX_CLOSE_REASON",
    "LocalProtocolError",
    "Opcode",
    "PerMessageDeflate",
    "Ping",
    "Pong",
    "PreparedMessage",
    "Rejected",
    "RemoteProtocolError",
    "Request",
    "ServerConnection",
    "TextChunk",
    "TextMessage",
    "apply_mask",
    "encode_frame",
    "fit_close_reason",
    "parse_header",
    "prepare_message",
    "speedups_enabled",
]

__version__ = "0.1.0"
