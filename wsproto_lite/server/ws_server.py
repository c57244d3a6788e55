"""The WebSocket server: listening sockets, per-connection setup, broadcast, graceful shutdown.

from wsproto_lite.server import Handler, WebSocketServer

class Echo(Handler):
    def on_message(self, conn, message):
        conn.send(message)

WebSocketServer(Echo(), host="127.0.0.1", port=8765).serve_forever()   # Ctrl-C: close 1001, exit
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterable

from wsproto_lite import CloseCode, ConnectionState, prepare_message

from .endpoint import open_transport, server_core
from .fanout import DirectSockets, send_direct, split_direct
from .handler import Handler, HTTPHandler
from .loop import EventLoop, TimerHandle
from .net import Listener, bind_sockets
from .options import Options
from .trace import FrameTracer
from .websocket import WebSocket

__all__ = ["WebSocketServer"]

logger = logging.getLogger("wsproto_lite.server.ws_server")

#: Connections beyond ``max_connections`` are still answered (503) up to this many extra; past that the
#: socket is closed at once, so a flood cannot make us hold more than this.
_OVERFLOW_ALLOWANCE = 256


class WebSocketServer:
    """Serves WebSocket connections to ``handler`` on one or more listening sockets.

    ``host=None`` (or ``""``) listens on every IPv4 and IPv6 interface; ``port=0`` picks a free port
    (see :attr:`port`).  Sockets are bound in the constructor, so "address in use" raises ``OSError``
    there.  Everything else happens in ``loop`` (a new one if not given).
    """

    def __init__(
        self,
        handler: Handler,
        *,
        host: str | None = "127.0.0.1",
        port: int = 8765,
        ssl_context: ssl.SSLContext | None = None,
        options: Options | None = None,
        http_handler: HTTPHandler | None = None,
        loop: EventLoop | None = None,
        reuse_port: bool = False,
        backlog: int = 1024,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.handler = handler
        self.options = options or Options()
        self.ssl_context = ssl_context
        self.http_handler = http_handler
        self.loop = loop or EventLoop()
        self._trace = trace
        self.connections: set[WebSocket] = set()
        """Every connection whose socket is still open (handshaking, open, closing or lingering)."""
        self._overflow: set[WebSocket] = set()  # answered 503 while over max_connections
        self._direct = DirectSockets()  # the open ones, sorted for broadcast (see fanout.DirectSockets)
        self._shutdown_timer: TimerHandle | None = None
        self._shutting_down = False
        self._shutdown_done = False
        self._stop_loop_when_done = False
        self._on_shutdown_done: list[Callable[[], None]] = []
        self.listeners = [
            Listener(self.loop, s, self._accept)
            for s in bind_sockets(host, port, reuse_port=reuse_port, backlog=backlog)
        ]

    # -- addresses -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self.listeners[0].address[1]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every (host, port) listened on."""
        return [listener.address for listener in self.listeners]

    # -- connections ---------------------------------------------------------------------------

    def open_connections(self) -> list[WebSocket]:
        """The connections whose handshake completed and which are not closing."""
        return [c for c in self.connections if c.is_open]

    def _accept(self, sock: socket.socket, address: object) -> None:
        limit = self.options.max_connections
        over = limit is not None and len(self.connections) >= limit
        if self._shutting_down or (over and len(self._overflow) >= _OVERFLOW_ALLOWANCE):
            sock.close()
            return
        tracer = FrameTracer(_format_address(address), self._trace, server_side=True) if self._trace else None
        conn = WebSocket(
            self.loop,
            server_core(self.options),
            self.handler,
            self.options,
            http_handler=self.http_handler,
            over_capacity=over,
            on_finished=self._finished,
            tracer=tracer,
            direct_sockets=self._direct,
        )
        conn.remote_address = address
        (self._overflow if over else self.connections).add(conn)
        try:
            transport = open_transport(
                self.loop, sock, conn, self.options, self.ssl_context, server_side=True
            )
        except OSError as exc:  # the peer is already gone (getpeername/setsockopt failed)
            logger.debug("dropping %s: %s", address, exc)
            sock.close()
            self._finished(conn)
            return
        conn.attach(transport)

    def _finished(self, conn: WebSocket) -> None:
        self._overflow.discard(conn)
        self.connections.discard(conn)
        if self._shutting_down and not self.connections:
            self._shutdown_complete()

    # -- broadcast -----------------------------------------------------------------------------

    def broadcast(self, message: str | bytes, connections: Iterable[WebSocket] | None = None) -> int:
        """Send ``message`` to ``connections`` (default: every open one), building the frame once.

        Connections over their high watermark (``not conn.writable``) are skipped: a slow peer does not
        make the others wait nor the server buffer without bound.  Returns how many got the message.
        Broadcast frames are never compressed.  The writes go below the interpreter where they can
        (see :mod:`.fanout`); to every connection, without a Python step for each one already known
        to take them directly (:class:`.fanout.DirectSockets`).
        """
        prepared = prepare_message(message)
        if connections is None:  # every open connection: no Python step for those already known direct
            self._direct.activate(self.connections)
            direct, fds, rest = self._direct.split()
        else:
            direct, fds, rest = split_direct(list(connections))
        send_direct(direct, fds, prepared)  # plain TCP with nothing queued: one C loop over their sockets
        sent = len(direct)
        for conn in rest:
            if conn.writable and conn.send_prepared(prepared):
                sent += 1
        return sent

    # -- running and stopping ------------------------------------------------------------------

    def serve_forever(self, *, handle_signals: bool = True) -> None:
        """Run the loop until :meth:`shutdown` finishes (SIGINT/SIGTERM trigger it in the main thread)."""
        handle_signals = handle_signals and threading.current_thread() is threading.main_thread()
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(signum, self._on_signal)
        self._stop_loop_when_done = True
        try:
            self.loop.run_forever()
        finally:
            if handle_signals:
                self.loop.remove_signal_handlers()

    def _on_signal(self) -> None:
        if self._shutting_down:
            logger.warning("second signal: stopping now")
            self._shutdown_complete(force=True)
            self.loop.stop()
            return
        logger.info("signal received: shutting down (close 1001 to %d connections)", len(self.connections))
        self.shutdown()

    def shutdown(
        self,
        timeout: float = 5.0,
        code: int = CloseCode.GOING_AWAY,
        reason: str = "server shutting down",
        on_done: Callable[[], None] | None = None,
    ) -> None:
        """Graceful stop (loop thread): stop accepting, close every connection with ``code`` (1001 "going
        away"), wait at most ``timeout`` s for the closing handshakes, then abort the rest.

        ``on_done()`` runs when every connection is gone; the loop stops then if :meth:`serve_forever`
        runs it.
        """
        if on_done is not None:
            self._on_shutdown_done.append(on_done)
        if self._shutting_down:
            return
        self._shutting_down = True
        for listener in self.listeners:
            listener.close()
        for conn in list(self.connections):
            if conn.is_open:
                conn.close(code, reason)
            elif conn.core.state is ConnectionState.CONNECTING:
                conn.abort()  # still handshaking
        if not self.connections:
            self._shutdown_complete()
        else:
            self._shutdown_timer = self.loop.call_later(timeout, self._shutdown_complete, True)

    def _shutdown_complete(self, force: bool = False) -> None:
        if self._shutdown_done:
            return
        self._shutdown_done = True
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
        if force:
            for conn in list(self.connections):
                conn.abort()
        callbacks, self._on_shutdown_done = self._on_shutdown_done, []
        for callback in callbacks:
            callback()
        if self._stop_loop_when_done:
            self.loop.stop()

    def close(self) -> None:
        """Stop listening and drop every connection at once (no closing handshake)."""
        self._shutting_down = True
        for listener in self.listeners:
            listener.close()
        for conn in list(self.connections):
            conn.abort()


def _format_address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)
