"""Adapters giving every implementation the same tiny interface.

Each adapter module provides:

- ``info() -> dict``: version and which accelerations are active in this process;
- ``recv_adapter() -> RecvAdapter``: an already-handshaken server-side connection;
- ``send_adapter(role) -> SendAdapter``: an already-handshaken connection of ``role``
  ("server": unmasked frames, "client": masked frames).

A *variant* is an adapter module plus the environment its worker process runs in (that is how
C accelerations are switched off: they are chosen at import time).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Protocol


class RecvAdapter(Protocol):
    def feed(self, chunk: bytes) -> list[str | bytes]:
        """Feed received bytes; return the messages completed by them (``str`` or ``bytes``)."""


class SendAdapter(Protocol):
    def send(self, message: str | bytes) -> object:
        """Queue one message and return what must be written (``bytes`` or a list of buffers)."""


@dataclass(frozen=True)
class Variant:
    name: str
    module: str
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""


OURS = "wsproto-lite"
#: Our core with the C accelerator switched off (the pure-Python reference path).
OURS_PY = "wsproto-lite-py"

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(OURS, "ours", note="ServerConnection/ClientConnection"),
        Variant(
            OURS_PY,
            "ours",
            {"WSPROTO_LITE_NO_SPEEDUPS": "1"},
            "same, WSPROTO_LITE_NO_SPEEDUPS=1 in its worker process",
        ),
        Variant("wsproto", "wsproto_peer", note="WSConnection; partial messages joined by the adapter"),
        Variant("websockets", "websockets_peer", note="sans-IO ServerProtocol/ClientProtocol"),
        Variant(
            "websockets-py",
            "websockets_peer",
            {"BENCH_WEBSOCKETS_PURE": "1"},
            "same, websockets.frames.apply_mask replaced by websockets.utils.apply_mask",
        ),
        Variant("aiohttp", "aiohttp_peer", note="WebSocketReader/WebSocketWriter (what web_ws uses)"),
        Variant(
            "aiohttp-py",
            "aiohttp_peer",
            {"AIOHTTP_NO_EXTENSIONS": "1"},
            "same, AIOHTTP_NO_EXTENSIONS=1 in its worker process",
        ),
        Variant(
            "picows", "picows_peer", note="WSProtocol fed through get_buffer/buffer_updated (receive only)"
        ),
    )
}


def load(variant: str) -> ModuleType:
    """Import the adapter module of ``variant`` (in the current process and environment)."""
    return importlib.import_module(f"benchmarks.peers.{VARIANTS[variant].module}")


def host_request(path: str = "/") -> bytes:
    """The handshake request every sans-IO server adapter is fed."""
    from ..frames import handshake_request

    return handshake_request("localhost", path)[0]
