"""Sending webhooks: a bounded queue the hub's loop fills, and one thread that batches, signs and POSTs.

The loop only appends to the queue (``submit``: never waits on the network); a full queue drops the new
event and counts it.  The sender thread takes up to ``max_batch`` events, waiting at most
``batch_window`` after the first for more, signs the body once and POSTs it to each URL in turn,
retrying with exponential backoff on 5xx, 408, 429, timeouts and connection errors, at most
``max_attempts`` tries; other answers (4xx: a wrong signature, say) fail at once.  One thread, one
request at a time: batches reach each URL in the order their events happened.

HTTP with urllib3 (the ``webhooks`` extra): a pool of one reused connection per URL, no redirects, a
bounded read of the receiver's answer.  The signature is the stdlib's ``hmac`` over the exact body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .auth import MissingExtra
from .webhook_config import WebhookConfig

__all__ = ["WebhookSender", "WebhookStats", "sign", "MissingWebhookExtra"]

logger = logging.getLogger("wsproto_lite.hub.webhooks")

SIGNATURE_HEADER = "X-Hub-Signature"
KEY_HEADER = "X-Hub-Key"
_ANSWER_READ = 64 * 1024  # bytes of a receiver's answer read at most (it is not used)
_RETRY_STATUSES = frozenset({408, 429})


class MissingWebhookExtra(MissingExtra):
    """Webhooks are configured but urllib3 is not installed (the ``webhooks`` extra)."""


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature`` of ``body``: hex HMAC-SHA256 under ``secret`` (Pusher's scheme)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class WebhookStats:
    """Counters (the sender thread bumps them; ``/metrics`` reads them)."""

    queued: int = 0
    """Events accepted into the queue."""
    dropped: int = 0
    """Events refused because the queue was full."""
    sent: int = 0
    """Requests answered 2xx."""
    failed: int = 0
    """Requests given up (a final answer other than 2xx, or out of attempts)."""
    lost: int = 0
    """Events in the requests given up (counted once per URL)."""
    retried: int = 0
    """Requests tried again after a 5xx, 408, 429, a timeout or a connection error."""
    undecided: int = 0
    """Channel or member transitions not decided because the engine failed (no event sent)."""


def _pool_manager(config: WebhookConfig) -> Any:
    try:
        import urllib3
    except ImportError:
        raise MissingWebhookExtra("webhooks need urllib3: pip install 'wsproto-lite[webhooks]'") from None
    timeout = urllib3.Timeout(connect=config.timeout, read=config.timeout)
    return urllib3.PoolManager(num_pools=max(1, len(config.urls)), maxsize=1, timeout=timeout, retries=False)


class WebhookSender:
    """``submit(event)`` from the loop; ``start()`` / ``stop()`` the thread."""

    def __init__(self, config: WebhookConfig, stats: WebhookStats | None = None) -> None:
        self.config = config
        self.stats = stats if stats is not None else WebhookStats()
        self._http = _pool_manager(config)
        self._pending: deque[dict[str, Any]] = deque()
        self._ready = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def queued_now(self) -> int:
        return len(self._pending)

    def submit(self, event: dict[str, Any]) -> bool:
        """Queue ``event``; False (and counted) when the queue is full.  Never waits on the network."""
        with self._ready:
            if len(self._pending) >= self.config.queue_size:
                self.stats.dropped += 1
                return False
            self._pending.append(event)
            self.stats.queued += 1
            if len(self._pending) == 1 or len(self._pending) >= self.config.max_batch:
                self._ready.notify()
        return True

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hub-webhooks", daemon=True)
            self._thread.start()

    def stop(self, wait: float = 1.0) -> None:
        """Stop: what is queued is sent once more without retries, for at most ``wait`` seconds."""
        self._stopping.set()
        with self._ready:
            self._ready.notify()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait)
        if thread is None or not thread.is_alive():
            self._http.clear()

    # -- the sender thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            body = json.dumps(
                {"time_ms": int(time.time() * 1000), "events": batch}, separators=(",", ":")
            ).encode()
            headers = {
                "Content-Type": "application/json",
                KEY_HEADER: self.config.key,
                SIGNATURE_HEADER: sign(self.config.secret, body),
            }
            for url in self.config.urls:
                if not self._deliver(url, body, headers):
                    self.stats.lost += len(batch)

    def _take(self) -> list[dict[str, Any]] | None:
        """The next batch (waiting for its first event, then up to the window); None once stopped and
        empty."""
        config = self.config
        with self._ready:
            self._ready.wait_for(lambda: self._pending or self._stopping.is_set())
            if not self._pending:
                return None
            self._ready.wait_for(
                lambda: len(self._pending) >= config.max_batch or self._stopping.is_set(),
                config.batch_window,
            )
            count = min(len(self._pending), config.max_batch)
            return [self._pending.popleft() for _ in range(count)]

    def _deliver(self, url: str, body: bytes, headers: dict[str, str]) -> bool:
        """POST until a final answer or out of attempts; True when delivered."""
        config = self.config
        delay = config.backoff
        for attempt in range(1, config.max_attempts + 1):
            outcome = self._attempt(url, body, headers)
            if outcome == "sent":
                self.stats.sent += 1
                return True
            if outcome == "final" or attempt == config.max_attempts or self._stopping.is_set():
                break
            self.stats.retried += 1
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, config.max_backoff)
        self.stats.failed += 1
        return False

    def _attempt(self, url: str, body: bytes, headers: dict[str, str]) -> str:
        """One POST: ``"sent"`` (2xx), ``"retry"`` (5xx, 408, 429, no answer) or ``"final"``."""
        import urllib3

        try:
            response = self._http.request(
                "POST", url, body=body, headers=headers, redirect=False, preload_content=False
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            logger.warning("webhook %s: %s", url, exc)
            return "retry"
        try:
            response.read(_ANSWER_READ)
            if response.read(1):  # a larger answer: the connection is not reused
                response.close()
            else:
                response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError):
            response.close()
        status = response.status
        if 200 <= status < 300:
            return "sent"
        logger.warning("webhook %s: HTTP %d", url, status)
        return "retry" if status >= 500 or status in _RETRY_STATUSES else "final"
