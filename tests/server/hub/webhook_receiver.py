"""A real webhook receiver for the tests: an HTTP server on 127.0.0.1 that checks each POST's
``X-Hub-Signature`` as an application would (401 when wrong) and keeps the accepted batches."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def verify(secret: str, body: bytes, signature: str) -> bool:
    """What the README tells a receiver to do: the hex HMAC-SHA256 of the raw body, compared in constant
    time."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class Receiver:
    """``Receiver(secret)``; ``statuses``: answers to give before 200 (``[500]``: one failure first).
    ``wait_events(n)`` blocks (on a condition) until ``n`` events arrived."""

    def __init__(self, secret: str = "s3cret") -> None:
        self.secret = secret
        self.batches: list[dict[str, Any]] = []
        self.rejected = 0
        self.requests = 0
        self.keys: set[str] = set()
        self.senders: list[str] = []
        """The ``X-Hub-Key`` of each accepted batch."""
        self.statuses: list[int] = []
        self.hold: threading.Event | None = None
        """Set: every request waits for it before being answered (a stalled backend)."""
        self.answer = b""
        """The body of every answer (a hostile backend's huge one, say)."""
        self.arrived = 0
        self.changed = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, name="receiver", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    @property
    def events(self) -> list[dict[str, Any]]:
        with self.changed:
            return [event for batch in self.batches for event in batch["events"]]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def wait_events(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        assert self.wait_for(lambda: sum(len(b["events"]) for b in self.batches) >= count, timeout), (
            self.batches
        )
        return self.events

    def _answer(self, body: bytes, headers: Any) -> int:
        with self.changed:
            self.requests += 1
            try:
                if not verify(self.secret, body, headers.get("X-Hub-Signature", "")):
                    self.rejected += 1
                    return 401
                if self.statuses:
                    return self.statuses.pop(0)
                self.keys.add(headers.get("X-Hub-Key", ""))
                self.senders.append(headers.get("X-Hub-Key", ""))
                self.batches.append(json.loads(body))
                return 200
            finally:
                self.changed.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.changed:
                    receiver.arrived += 1
                    receiver.changed.notify_all()
                if receiver.hold is not None:
                    receiver.hold.wait(10)
                status = receiver._answer(body, self.headers)
                self.send_response(status)
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                try:
                    self.wfile.write(receiver.answer)
                except OSError:
                    pass  # the sender read what it wanted and closed

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
