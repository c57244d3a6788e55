"""The opening handshake (RFC 6455 §4): validating and building the HTTP upgrade, both roles."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence

from ._errors import HandshakeFailure
from ._events import Headers
from ._http import (
    HeaderIndex,
    build_head,
    header_index,
    header_values,
    split_tokens,
    status_phrase,
    token_list,
)
from .extensions import ExtensionFactory, Params

__all__ = [
    "accept_key",
    "validate_upgrade_request",
    "is_upgrade_request",
    "parse_extension_header",
    "build_request",
    "build_response",
    "validate_response",
]

# §1.3: the GUID concatenated to the client's key
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)) (§4.2.2 step 5.4)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def is_upgrade_request(headers: Headers, index: HeaderIndex | None = None) -> bool:
    """Does the request ask for a WebSocket upgrade? If not, it is a plain HTTP request.

    ``index``: the request's :func:`header_index`, when the caller has it (else it is built)."""
    index = header_index(headers) if index is None else index
    return any(token.lower() == "websocket" for token in split_tokens(index.get("upgrade", ())))


def validate_upgrade_request(
    method: str, version: tuple[int, int], headers: Headers, index: HeaderIndex | None = None
) -> str:
    """Check a request that asked for ``Upgrade: websocket`` (§4.2.1); return its Sec-WebSocket-Key.

    ``index``: the request's :func:`header_index`, when the caller has it (else it is built)."""
    index = header_index(headers) if index is None else index
    # §4.2.1 (1): "An HTTP/1.1 or higher GET request"
    if method != "GET":
        raise HandshakeFailure(f"the opening handshake must be a GET, not {method}", 405, (("Allow", "GET"),))
    if version < (1, 1):
        raise HandshakeFailure("the opening handshake needs HTTP/1.1 or higher")
    # §4.2.1 (2): a |Host| header field
    if len(index.get("host", ())) != 1:
        raise HandshakeFailure("missing or repeated Host header")
    # §4.2.1 (4): a |Connection| header field that includes the token "Upgrade", case-insensitively
    if not any(token.lower() == "upgrade" for token in split_tokens(index.get("connection", ()))):
        raise HandshakeFailure("the Connection header does not include 'upgrade'")
    # §4.2.1 (6): Sec-WebSocket-Version must be 13; otherwise answer 426 naming the versions we speak
    # (§4.4)
    versions = index.get("sec-websocket-version")
    if versions != ["13"]:
        raise HandshakeFailure("unsupported Sec-WebSocket-Version", 426, (("Sec-WebSocket-Version", "13"),))
    # §4.2.1 (5): a |Sec-WebSocket-Key| that, base64-decoded, is 16 bytes long
    keys = index.get("sec-websocket-key", [])
    if len(keys) != 1:
        raise HandshakeFailure("missing or repeated Sec-WebSocket-Key")
    try:
        raw = base64.b64decode(keys[0].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise HandshakeFailure("Sec-WebSocket-Key is not base64") from None
    if len(raw) != 16:
        raise HandshakeFailure("Sec-WebSocket-Key does not decode to 16 bytes")
    return keys[0]


def parse_extension_header(values: Sequence[str]) -> list[tuple[str, Params]]:
    """Parse Sec-WebSocket-Extensions values (§9.1) into ``[(name, [(param, value), ...]), ...]``.

    Grammar: ``extension *( ";" param [ "=" (token | quoted-string) ] )``, comma-separated. Raises
    ValueError on a syntax error.
    """
    result: list[tuple[str, Params]] = []
    for value in values:
        result.extend(_ExtensionScanner(value).extensions())
    return result


class _ExtensionScanner:
    """A cursor over one Sec-WebSocket-Extensions header value (§9.1 grammar)."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.pos = 0

    def extensions(self) -> list[tuple[str, Params]]:
        found: list[tuple[str, Params]] = []
        value, end = self.value, len(self.value)
        while True:
            self.skip_ws()
            if self.pos < end and value[self.pos] == ",":  # empty list elements are allowed (RFC 9110 §5.6.1)
                self.pos += 1
                continue
            if self.pos >= end:
                return found
            name = self.token()
            found.append((name, self.params()))
            if self.pos < end:
                if value[self.pos] != ",":
                    raise ValueError(f"unexpected {value[self.pos]!r} in {value!r}")
                self.pos += 1

    def params(self) -> Params:
        params: Params = []
        self.skip_ws()
        while self.peek(";"):
            self.pos += 1
            self.skip_ws()
            name = self.token()
            self.skip_ws()
            param_value: str | None = None
            if self.peek("="):
                self.pos += 1
                self.skip_ws()
                param_value = self.param_value()
                self.skip_ws()
            params.append((name, param_value))
        return params

    def param_value(self) -> str:
        quoted = _QUOTED.match(self.value, self.pos)
        if not quoted:
            return self.token()
        self.pos = quoted.end()
        unquoted = re.sub(r"\\(.)", r"\1", quoted.group(1))
        # RFC 6455 §9.1: a quoted value must itself be a token once unquoted
        if not _TOKEN.fullmatch(unquoted):
            raise ValueError(f"quoted value {unquoted!r} is not a token")
        return unquoted

    def peek(self, char: str) -> bool:
        return self.pos < len(self.value) and self.value[self.pos] == char

    def skip_ws(self) -> None:
        while self.pos < len(self.value) and self.value[self.pos] in " \t":
            self.pos += 1

    def token(self) -> str:
        match = _TOKEN.match(self.value, self.pos)
        if match is None:
            raise ValueError(f"expected a token at {self.pos} in {self.value!r}")
        self.pos = match.end()
        return match.group()


def build_request(
    host: str,
    target: str,
    key: str,
    subprotocols: Sequence[str],
    extension_offers: Sequence[str],
    extra_headers: Sequence[tuple[str, str]],
) -> bytes:
    """The client's opening handshake (§4.1)."""
    headers = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    if subprotocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    if extension_offers:
        headers.append(("Sec-WebSocket-Extensions", ", ".join(extension_offers)))
    headers.extend(extra_headers)
    return build_head(f"GET {target} HTTP/1.1", headers)


def build_response(status: int, headers: Sequence[tuple[str, str]], body: bytes = b"") -> bytes:
    """An HTTP/1.1 response head (and body, with Content-Length unless it is a 101)."""
    all_headers = list(headers)
    if status != 101:
        names = {name.lower() for name, _ in all_headers}
        if "content-length" not in names:
            all_headers.append(("Content-Length", str(len(body))))
        if "connection" not in names:
            all_headers.append(("Connection", "close"))
    return build_head(f"HTTP/1.1 {status} {status_phrase(status)}".rstrip(), all_headers) + body


def validate_response(
    headers: Headers,
    key: str,
    subprotocols: Sequence[str],
    factories: Sequence[ExtensionFactory],
) -> tuple[str | None, list[tuple[str, Params]]]:
    """Check a 101 response (§4.1 "the client MUST validate the server's response"); raise HandshakeFailure.

    Returns the chosen subprotocol and the accepted extensions (name, params).
    """
    # §4.1 (2)-(3): Upgrade: websocket and Connection: Upgrade, case-insensitively
    if not any(token.lower() == "websocket" for token in token_list(headers, "Upgrade")):
        raise HandshakeFailure("the response's Upgrade header is not 'websocket'", 101)
    if not any(token.lower() == "upgrade" for token in token_list(headers, "Connection")):
        raise HandshakeFailure("the response's Connection header does not include 'upgrade'", 101)
    # §4.1 (4): Sec-WebSocket-Accept must be base64(SHA-1(key + GUID))
    if header_values(headers, "Sec-WebSocket-Accept") != [accept_key(key)]:
        raise HandshakeFailure("wrong or missing Sec-WebSocket-Accept", 101)
    # §4.1 (6): a subprotocol the client did not offer fails the connection
    chosen = token_list(headers, "Sec-WebSocket-Protocol")
    if len(chosen) > 1 or (chosen and chosen[0] not in subprotocols):
        raise HandshakeFailure(f"the server chose a subprotocol we did not offer: {chosen}", 101)
    # §4.1 (5): an extension the client did not offer fails the connection
    try:
        extensions = parse_extension_header(header_values(headers, "Sec-WebSocket-Extensions"))
    except ValueError as exc:
        raise HandshakeFailure(f"malformed Sec-WebSocket-Extensions: {exc}", 101) from None
    offered = {factory.name for factory in factories}
    seen = set()
    for name, _ in extensions:
        if name not in offered or name in seen:
            raise HandshakeFailure(f"the server accepted an extension we did not offer: {name}", 101)
        seen.add(name)
    return (chosen[0] if chosen else None), extensions
