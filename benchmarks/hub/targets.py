"""The servers of the hub benchmark behind one small driver interface.

A driver says how to start its server, which WebSocket path to open, which text messages a connection
sends (and which reply it waits for) before it is a publisher or a subscriber, how to publish, and how
to recognise a delivery and extract the publication's ``(seq, t)`` from it. Every published payload
is the JSON object ``{"bench_seq": n, "bench_t": time.monotonic_ns(), "text": ...}``; each protocol
wraps it. Deliveries are recognised by those two keys with a regular expression rather than a full
``json.loads`` (a third of the load generator's cost per delivery); everything else is decoded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..loopback import ROOT, ServerProc, free_port

CHANNEL = "bench:fanout"  # the contract's `bench` namespace: no presence, no history, clients publish
TEXT = "lorem ipsum dolor sit amet, consectetur"  # padding: ~90 bytes of published JSON in all

# THE ONE LINE TO ADJUST if the hub's command line differs from the contract (`python -m server hub
# --host H --port N`, defaults that work on a laptop); run from the repository root.
# --config: the rate limits lifted (the peers have none; see benchmarks/hub/unlimited.toml).
HUB_COMMAND = [
    "-m",
    "server",
    "hub",
    "--host",
    "{host}",
    "--port",
    "{port}",
    "--config",
    "benchmarks/hub/unlimited.toml",
]

Step = tuple[str | None, Callable[[str], bool]]  # (message to send or None, "is this its reply?")


class Unavailable(Exception):
    """The target cannot be measured here (package missing, server absent): skipped with a note."""


def payload(seq: int, t_ns: int) -> dict[str, Any]:
    return {"bench_seq": seq, "bench_t": t_ns, "text": TEXT}


_SEQ = re.compile(r'"bench_seq":\s*(\d+)')
_STAMP = re.compile(r'"bench_t":\s*(\d+)')


def stamp(text: str) -> tuple[int, int] | None:
    """``(seq, t)`` of the payload inside ``text`` (whatever wraps it), or None."""
    seq = _SEQ.search(text)
    if seq is None:
        return None
    t = _STAMP.search(text, seq.end())
    if t is None:
        t = _STAMP.search(text)
    if t is None:
        raise ValueError(f"a payload without its timestamp: {text[:200]}")
    return int(seq[1]), int(t[1])


class Target(Protocol):
    name: str
    path: str

    def start(self, host: str) -> ServerProc:
        """Start the server in its own process (raises ``Unavailable``)."""

    def setup(self, subscribe: bool) -> list[Step]:
        """What a new connection sends, in order, each step waiting for its reply."""

    def publish(self, seq: int, t_ns: int) -> str:
        """The text message that publishes ``payload(seq, t_ns)`` into the channel."""

    def delivery(self, text: str) -> tuple[int, int] | None:
        """``(seq, t)`` when ``text`` delivers a publication, else None."""

    def answer(self, text: str) -> str | None:
        """A reply the protocol requires to a non-delivery message (e.g. a ping), else None."""

    def info(self) -> dict[str, str]:
        """``version``, ``accelerations`` and ``note`` for the report's implementation table."""


def _need(*modules: str) -> None:
    for m in modules:
        if importlib.util.find_spec(m) is None:
            raise Unavailable(f"{m} not installed (pip install -r benchmarks/requirements.txt)")


def _peer(name: str, impl: str, host: str) -> ServerProc:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.hub_peers", impl, "--host", host, "--port", str(port)]
    return ServerProc(name, argv, port)


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "?"


@dataclass
class Hub:
    """Ours: the hub, over Centrifugo's client protocol v2 (JSON; wsproto_lite/hub/PROTOCOL.md)."""

    name: str = "hub"
    path: str = "/connection/websocket"

    def start(self, host: str) -> ServerProc:
        if not os.path.isdir(os.path.join(ROOT, "wsproto_lite", "hub")):  # the command runs from ROOT
            raise Unavailable("hub not available (wsproto_lite/hub/ does not exist in this tree)")
        port = free_port()
        argv = [sys.executable, *(a.format(host=host, port=port) for a in HUB_COMMAND)]
        try:
            return ServerProc(self.name, argv, port)
        except RuntimeError as exc:
            raise Unavailable(f"hub not available: {exc}") from None

    def setup(self, subscribe: bool) -> list[Step]:
        steps: list[Step] = [(_request(1, "connect", {"name": "bench"}), _reply_to(1))]
        if subscribe:
            steps.append((_request(2, "subscribe", {"channel": CHANNEL}), _reply_to(2)))
        return steps

    def publish(self, seq: int, t_ns: int) -> str:
        # ids 1 and 2 are connect and subscribe; seq is never reused within a run
        return _request(seq + 3, "publish", {"channel": CHANNEL, "data": payload(seq, t_ns)})

    def delivery(self, text: str) -> tuple[int, int] | None:
        got = stamp(text)
        if got is None and "error" in json.loads(text):
            raise RuntimeError(f"hub error reply: {text[:200]}")
        return got

    def answer(self, text: str) -> str | None:
        return "{}" if text == "{}" else None  # the hub's app-level ping: pong, or it closes with 3012

    def info(self) -> dict[str, str]:
        from ..peers import ours  # the same core as in this process: the server runs this tree

        return {**ours.info(), "note": "`python -m server hub`: JSON protocol, channel bench:fanout"}


def _request(rid: int, method: str, params: dict[str, Any]) -> str:
    return json.dumps({"id": rid, method: params}, separators=(",", ":"))


def _reply_to(rid: int) -> Callable[[str], bool]:
    def is_reply(text: str) -> bool:
        msg = json.loads(text)
        if msg.get("id") != rid:
            return False
        if "error" in msg:
            raise RuntimeError(f"hub refused request {rid}: {msg['error']}")
        return True

    return is_reply


@dataclass
class HubASGI(Hub):
    """The same hub as an ASGI app (``wsproto_lite.hub.asgi.HubASGI``) mounted at ``/hub`` in a Starlette
    app on uvicorn with our WebSocket class: what a FastAPI/Starlette user who mounts it runs."""

    name: str = "hub-asgi"
    path: str = "/hub/connection/websocket"

    def start(self, host: str) -> ServerProc:
        _need("uvicorn", "starlette")
        return _peer(self.name, "hub-asgi", host)

    def info(self) -> dict[str, str]:
        from ..peers import ours

        return {
            **ours.info(),
            "note": f"HubASGI mounted at /hub in Starlette, uvicorn {_version('uvicorn')} (asyncio loop, "
            "wsproto_lite.adapters.uvicorn.WSProtoLiteProtocol); benchmarks/hub_peers.py",
        }


@dataclass
class SocketIO:
    """python-socketio AsyncServer on uvicorn (rooms); clients speak Engine.IO 4 / Socket.IO 5 over a
    raw WebSocket: ``0{...}`` open packet, ``40`` namespace connect, ``42[event, data]`` events,
    ``43``+ack id for acknowledgements, ping ``2`` answered by pong ``3``."""

    name: str = "python-socketio"
    path: str = "/socket.io/?EIO=4&transport=websocket"

    def start(self, host: str) -> ServerProc:
        _need("socketio", "uvicorn")
        return _peer(self.name, "socketio", host)

    def setup(self, subscribe: bool) -> list[Step]:
        steps: list[Step] = [
            (None, lambda t: t.startswith("0{")),  # Engine.IO open packet
            ("40", lambda t: t.startswith("40")),  # Socket.IO CONNECT to "/" and its reply
        ]
        if subscribe:  # event with ack id 1: the reply is "431[...]" once enter_room has run
            steps.append(('421["subscribe","bench"]', lambda t: t.startswith("431")))
        return steps

    def publish(self, seq: int, t_ns: int) -> str:
        return "42" + json.dumps(["publish", payload(seq, t_ns)], separators=(",", ":"))

    def delivery(self, text: str) -> tuple[int, int] | None:
        return stamp(text) if text.startswith('42["pub"') else None

    def answer(self, text: str) -> str | None:
        return "3" + text[1:] if text[:1] == "2" else None  # Engine.IO PING -> PONG

    def info(self) -> dict[str, str]:
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
        return {
            "version": f"{_version('python-socketio')} (uvicorn {_version('uvicorn')})",
            "accelerations": f"uvicorn defaults here: {loop} loop, {http}, websockets-sansio",
            "note": "AsyncServer (ASGI) on uvicorn; enter_room + emit(room=); benchmarks/hub_peers.py",
        }


@dataclass
class Websockets:
    """A bare websockets asyncio server: "subscribe" adds the connection to a set (reply
    "subscribed"), any other message goes to the set with ``websockets.broadcast``."""

    name: str = "websockets"
    path: str = "/"

    def start(self, host: str) -> ServerProc:
        _need("websockets")
        return _peer(self.name, "websockets", host)

    def setup(self, subscribe: bool) -> list[Step]:
        return [("subscribe", lambda t: t == "subscribed")] if subscribe else []

    def publish(self, seq: int, t_ns: int) -> str:
        return json.dumps(payload(seq, t_ns), separators=(",", ":"))

    def delivery(self, text: str) -> tuple[int, int] | None:
        return stamp(text)

    def answer(self, text: str) -> str | None:
        return None

    def info(self) -> dict[str, str]:
        speedups = importlib.util.find_spec("websockets.speedups") is not None
        return {
            "version": _version("websockets"),
            "accelerations": "C speedups (apply_mask)" if speedups else "none",
            "note": "asyncio serve(), a set of subscribers + websockets.broadcast; benchmarks/hub_peers.py",
        }


TARGETS: dict[str, Callable[[], Target]] = {
    "hub": Hub,
    "hub-asgi": HubASGI,
    "python-socketio": SocketIO,
    "websockets": Websockets,
}
OURS = "hub"

__all__ = ["CHANNEL", "HUB_COMMAND", "OURS", "TARGETS", "Step", "Target", "Unavailable", "payload", "stamp"]
