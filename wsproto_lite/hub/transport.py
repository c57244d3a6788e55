"""What the hub needs from a transport: one connection, and the loop it runs on.

The hub (``hub.py``) talks to these two interfaces only, so it runs wherever they are implemented:

- our selectors layer: :class:`wsproto_lite.server.websocket.WebSocket` and
  :class:`wsproto_lite.server.loop.EventLoop` satisfy them as they are;
- asyncio: any ``asyncio`` event loop is a :class:`HubLoop` as it is;
  :class:`wsproto_lite.hub.aio.AsyncConnection` is a :class:`HubConnection` over two coroutines (send a
  message, close);
- ASGI: :class:`wsproto_lite.hub.asgi.HubASGI` drives those from an ASGI server (uvicorn, hypercorn,
  daphne), mountable in FastAPI, Starlette and Django Channels.

Every method is called in the loop's thread, except :meth:`HubLoop.call_soon_threadsafe`.  The connection's
life cycle is the :class:`wsproto_lite.server.handler.Handler` one: ``handshake`` -> ``on_open`` ->
``on_message``* -> ``on_close`` (exactly once after ``on_open``), plus ``on_writable`` when the unsent data
drained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

    from wsproto_lite import PreparedMessage, Request

    from ..server.loop import EventLoop
    from ..server.websocket import WebSocket

__all__ = ["Cancellable", "HubConnection", "HubLoop"]


class Cancellable(Protocol):
    """A scheduled callback (``call_later``'s handle)."""

    def cancel(self) -> None:
        """Do not run it (idempotent); drop the references it holds."""


class HubLoop(Protocol):
    """The loop the hub and its engine run on: a clock, timers, sockets, and the hand-off from other
    threads."""

    def time(self) -> float:
        """A monotonic clock, in seconds."""

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Cancellable:
        """Run ``callback(*args)`` in the loop thread after ``delay`` seconds."""

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> object:
        """From any thread: run ``callback(*args)`` in the loop thread soon (a Redis connection made)."""

    def add_reader(self, fd: int, callback: Callable[[], object], /) -> None:
        """Call ``callback()`` whenever ``fd`` is readable (a networked engine's sockets)."""

    def remove_reader(self, fd: int, /) -> object:
        """Stop watching ``fd`` for readability."""

    def add_writer(self, fd: int, callback: Callable[[], object], /) -> None:
        """Call ``callback()`` whenever ``fd`` is writable."""

    def remove_writer(self, fd: int, /) -> object:
        """Stop watching ``fd`` for writability."""


class HubConnection(Protocol):
    """One client connection as the hub sees it (hashable: the hub keys its tables by connection).

    Flow control: ``buffered_amount`` counts what was queued for this peer and is not yet taken by the
    network (or by the ASGI server); over the transport's high watermark ``writable`` is False and the
    transport stops reading this peer (backpressure: no new commands while its answers wait); the handler's
    ``on_writable`` follows when it drained.  Over the hard limit ``send`` drops (returns False) and, if that
    lasts, the transport drops the connection.
    """

    @property
    def remote_address(self) -> Any:
        """The peer's address (``(host, port)`` for TCP), or None when unknown."""

    @property
    def request(self) -> Request | None:
        """The upgrade request: ``path``, ``query``, ``headers``, ``cookies``, ``origin``, ``header()``."""

    @property
    def buffered_amount(self) -> int:
        """Bytes queued for this peer and not yet sent."""

    @property
    def is_open(self) -> bool:
        """True while messages can be sent (opened, no close sent or asked for)."""

    @property
    def writable(self) -> bool:
        """False while ``buffered_amount`` is over the high watermark (or the connection is not open)."""

    @property
    def closed(self) -> bool:
        """True once the connection is over (``on_close`` was or is being called)."""

    def send(self, message: str | bytes) -> bool:
        """Queue a text (``str``) or binary message; False when dropped (not open, or over the hard limit)."""

    def send_prepared(self, prepared: PreparedMessage) -> bool:
        """Queue a message built once by ``wsproto_lite.prepare_message`` for many connections (fan-out)."""

    def pause_messages(self) -> None:
        """Hand no more messages to the handler (and stop reading the peer) until ``resume_messages``:
        the hub's backpressure while a connection's commands wait on the engine."""

    def resume_messages(self) -> None:
        """Hand out messages again (a no-op when not paused)."""

    def close(self, code: int = ..., reason: str = "") -> None:
        """Close with ``code`` and ``reason`` after what is already queued (idempotent)."""

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake; ``on_close`` follows."""


if TYPE_CHECKING:  # mypy proves that the selectors layer and asyncio satisfy the interfaces as they are

    def _implementations(conn: WebSocket, loop: EventLoop, aio: asyncio.AbstractEventLoop) -> object:
        connection: HubConnection = conn
        loops: tuple[HubLoop, HubLoop] = (loop, aio)
        return connection, loops
