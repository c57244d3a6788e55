"""Just enough HTTP/1.1 for the opening handshake (RFC 6455 §4, RFC 9112): heads in, heads out.

Reading is bounded: a head larger than the limit, or with too many header lines, is refused before it is
buffered further, and the search for the blank line never rescans what was already searched.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from ._events import Headers

__all__ = [
    "HeadReader",
    "HTTPError",
    "parse_request_head",
    "parse_response_head",
    "request_body_length",
    "build_head",
    "status_phrase",
    "HeaderIndex",
    "header_index",
    "split_tokens",
]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/(\d)\.(\d)\Z")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: (.*))?\Z")
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")


class HTTPError(Exception):
    """A malformed or oversized head; ``status`` is what a server answers (400 or 431)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class HeadReader:
    """Accumulates bytes until a complete HTTP head is there, within ``max_size`` bytes."""

    __slots__ = ("_buffer", "_searched", "max_size")

    def __init__(self, max_size: int) -> None:
        self._buffer = bytearray()
        self._searched = 0  # bytes already known not to contain the end of the head
        self.max_size = max_size

    def feed(self, data: bytes) -> tuple[bytes, bytes] | None:
        """Add ``data``; once the head is complete return ``(head, rest)``, where rest is what followed it."""
        self._buffer += data
        match = _END_OF_HEAD.search(self._buffer, max(0, self._searched - 3))
        if match is None:
            self._searched = len(self._buffer)
            if len(self._buffer) > self.max_size:
                raise HTTPError("request head too large", 431)
            return None
        if match.end() > self.max_size:
            raise HTTPError("request head too large", 431)
        head = bytes(self._buffer[: match.start()])
        rest = bytes(self._buffer[match.end() :])
        self._buffer = bytearray()
        return head, rest


def _parse_headers(lines: list[bytes], max_headers: int) -> Headers:
    if len(lines) > max_headers:
        raise HTTPError("too many header lines", 431)
    common = _COMMON_LINES.get
    return tuple(common(line) or _parse_header_line(line) for line in lines)


def _parse_header_line(line: bytes) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        # RFC 9112 §5.2: obsolete line folding; a server may reject it with 400
        raise HTTPError("obsolete line folding in header")
    name, sep, value = line.partition(b":")
    if not sep:
        raise HTTPError("malformed header line")
    known = _COMMON_NAMES.get(name)  # a known name is a token (RFC 9110 §5.1): no regex for it
    if known is None:
        if not _TOKEN.match(name):
            raise HTTPError("malformed header line")
        known = name.decode("ascii")
    return (known, value.strip(b" \t").decode("latin-1"))


# A server keeps each connection's request (its headers) while the connection lives, so the names and the
# whole lines every WebSocket client sends are shared, not built per connection (issue 22: ~50 bytes per
# name, ~130 per line). Fixed tables: nothing a peer sends is added to them.
_NAMES = (
    "Host Upgrade Connection Origin User-Agent Cookie Authorization Accept Accept-Encoding Accept-Language"
    " Cache-Control Pragma Referer Content-Length Content-Type Transfer-Encoding X-Forwarded-For"
    " X-Forwarded-Proto X-Forwarded-Host X-Real-IP Forwarded Sec-WebSocket-Key Sec-WebSocket-Version"
    " Sec-WebSocket-Extensions Sec-WebSocket-Protocol Sec-Fetch-Dest Sec-Fetch-Mode Sec-Fetch-Site"
).split()
_METHODS = {name.encode("ascii"): name for name in "GET HEAD POST PUT DELETE OPTIONS PATCH".split()}
_COMMON_NAMES: dict[bytes, str] = {
    variant.encode("ascii"): variant for name in _NAMES for variant in (name, name.lower())
}
_COMMON_LINES: dict[bytes, tuple[str, str]] = {
    line: _parse_header_line(line)
    for name, value in (
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Connection", "upgrade"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("Cache-Control", "no-cache"),
        ("Pragma", "no-cache"),
        ("Accept", "*/*"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("Accept-Encoding", "gzip, deflate"),
        ("Sec-Fetch-Dest", "websocket"),
        ("Sec-Fetch-Mode", "websocket"),
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Site", "same-site"),
    )
    for variant in (name, name.lower())
    for line in (f"{variant}: {value}".encode("latin-1"),)
}


def _split_lines(head: bytes) -> list[bytes]:
    return [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]


def parse_request_head(head: bytes, max_headers: int) -> tuple[str, str, tuple[int, int], Headers]:
    """``(method, target, (major, minor), headers)`` of a request head."""
    lines = _split_lines(head)
    match = _REQUEST_LINE.match(lines[0])
    if match is None:
        raise HTTPError("malformed request line")
    method, target, major, minor = match.groups()
    return (
        _METHODS.get(method) or method.decode("ascii"),
        target.decode("latin-1"),
        (int(major), int(minor)),
        _parse_headers(lines[1:], max_headers),
    )


def parse_response_head(head: bytes, max_headers: int) -> tuple[int, str, Headers]:
    """``(status, reason phrase, headers)`` of a response head."""
    lines = _split_lines(head)
    match = _STATUS_LINE.match(lines[0])
    if match is None:
        raise HTTPError("malformed status line")
    status = int(match.group(3))
    phrase = (match.group(4) or b"").decode("latin-1")
    return status, phrase, _parse_headers(lines[1:], max_headers)


def request_body_length(headers: Headers, limit: int) -> int:
    """How many body bytes follow a request head (RFC 9112 §6.3), refused over ``limit``.

    Only ``Content-Length`` framing is supported: a request without it has no body (§6.3 item 7).
    """
    if header_values(headers, "Transfer-Encoding"):
        # RFC 9112 §6.1: a transfer coding the server does not understand -> 501 (chunked is not supported)
        raise HTTPError("transfer codings are not supported; send Content-Length", 501)
    lengths = {value.strip() for value in header_values(headers, "Content-Length")}
    if not lengths:
        return 0
    length = lengths.pop()
    if lengths or not length.isdigit() or not length.isascii():
        raise HTTPError("invalid Content-Length")  # RFC 9112 §6.3 item 5: 400
    if int(length) > limit:
        raise HTTPError(f"request body over {limit} bytes", 413)  # RFC 9110 §15.5.14 Content Too Large
    return int(length)


def status_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (empty when unknown)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def build_head(first_line: str, headers: list[tuple[str, str]] | Headers) -> bytes:
    """Serialize a head; refuses CR/LF inside names and values (header injection)."""
    parts = [first_line]
    for name, value in headers:
        valid_name = name in _VALID_NAMES or _TOKEN.match(name.encode("latin-1", "replace"))
        if not valid_name or "\r" in value or "\n" in value:
            raise ValueError(f"invalid header {name!r}")
        parts.append(f"{name}: {value}")
    parts.append("\r\n")
    return "\r\n".join(parts).encode("latin-1")


#: Header names known to be tokens (RFC 9110 §5.1): ``build_head`` checks the others with ``_TOKEN``.
_VALID_NAMES = frozenset(_COMMON_NAMES.values()) | {"Sec-WebSocket-Accept", "Retry-After", "Allow"}


def header_values(headers: Headers, name: str) -> list[str]:
    """All values of header ``name`` (case-insensitive), in order."""
    name = name.lower()
    return [value for key, value in headers if key.lower() == name]


#: Every header's values by lowercased name, in order (see :func:`header_index`).
HeaderIndex = dict[str, list[str]]


def header_index(headers: Headers) -> HeaderIndex:
    """The values of every header by lowercased name, in order: one pass over the head for the several
    lookups of a handshake (``header_values`` is one pass per name)."""
    index: HeaderIndex = {}
    for key, value in headers:
        name = key.lower()
        values = index.get(name)
        if values is None:
            index[name] = [value]
        else:
            values.append(value)
    return index


def split_tokens(values: list[str] | tuple[()]) -> list[str]:
    """Comma-separated tokens of header ``values``, stripped, empty elements dropped (RFC 9110 §5.6.1)."""
    tokens: list[str] = []
    for value in values:
        tokens.extend(item.strip(" \t") for item in value.split(",") if item.strip(" \t"))
    return tokens


def token_list(headers: Headers, name: str) -> list[str]:
    """Comma-separated tokens of every ``name`` header, stripped, empty elements dropped (RFC 9110 §5.6.1)."""
    return split_tokens(header_values(headers, name))
