"""A real HTTP backend for the hooks tests: a ThreadingHTTPServer on 127.0.0.1 (HTTP/1.1, keep-alive)
that answers each path as a test says and records what it got."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: What a path answers: a JSON value, or ``Raw(status, body)`` for anything else.
Answer = Any


class RawAnswer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body


class Backend:
    """``backend.answers[path] = value or fn(request) -> value``; ``backend.got``: (path, body, headers)."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer | Callable[[dict[str, Any]], Answer]] = {}
        self.got: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.peers: set[tuple[str, int]] = set()
        self.release = threading.Event()
        """A ``"hang"`` answer waits for this."""
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with backend.lock:
                    backend.got.append((self.path, body, {k.lower(): v for k, v in self.headers.items()}))
                    backend.peers.add(self.client_address)
                answer = backend.answers.get(self.path)
                if callable(answer):
                    answer = answer(body)
                if answer == "hang":
                    backend.release.wait(30)
                    answer = None
                if isinstance(answer, RawAnswer):
                    status, data = answer.status, answer.body
                else:
                    status, data = 200, json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="hook-backend", daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def requests(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for p, body, _ in self.got if p == path]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
