"""Client driver for wstest fuzzingserver using the ``websockets`` sync client.

Adapts websockets to the server.client contract and reuses
conformance.client_driver.Driver, so it also exercises the driver logic.

    python -m conformance.standin.client_driver --url ws://127.0.0.1:9002
"""

from __future__ import annotations

from typing import Any

from conformance.client_driver import ClientAPI, main_with
from conformance.standin import AGENT


class StandinClosed(Exception):
    """Mirrors server.client.ConnectionClosed: has .code and .reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code, self.reason = code, reason


class _Conn:
    """websockets sync connection wearing the server.client interface."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws.__enter__()  # websockets 17 wants context-manager use

    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self._ws.close()

    def recv(self, timeout: float | None = None) -> str | bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            message: str | bytes = self._ws.recv(timeout=timeout)
            return message
        except ConnectionClosed as e:
            rcvd = e.rcvd
            raise StandinClosed(rcvd.code if rcvd else 1006, rcvd.reason if rcvd else "") from e

    def send(self, message: str | bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self._ws.send(message)
        except ConnectionClosed as e:
            raise StandinClosed(1006, str(e)) from e

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._ws.close(code, reason)


def connect(
    url: str, timeout: float = 10.0, compression: bool = True, max_message_size: int | None = None
) -> _Conn:
    """wsproto_lite.server.client.connect() look-alike."""
    from websockets.sync.client import connect as ws_connect

    ws = ws_connect(
        url,
        open_timeout=timeout,
        compression="deflate" if compression else None,
        max_size=max_message_size,
        proxy=None,
        ping_interval=None,
    )
    return _Conn(ws)


def load() -> ClientAPI:
    """ClientAPI for the stand-in (imports websockets now, to fail early if absent)."""
    import websockets  # noqa: F401

    return ClientAPI(connect=connect, closed=StandinClosed, name="websockets (stand-in)")


if __name__ == "__main__":
    raise SystemExit(main_with(load, AGENT))
