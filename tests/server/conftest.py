"""Shared fixtures: an event loop per test, a trustme CA, a loop running in a background thread."""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wsproto_lite.server.loop import EventLoop  # noqa: E402


@pytest.fixture
def loop() -> Iterator[EventLoop]:
    """A fresh loop, closed after the test."""
    lp = EventLoop()
    yield lp
    lp.close()


class LoopThread:
    """Runs an EventLoop in a daemon thread; ``call(fn)`` runs ``fn`` in it and returns the result."""

    def __init__(self) -> None:
        self.loop = EventLoop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def call(self, fn, *args, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        from srvtest_util import call_in_loop

        return call_in_loop(self.loop, fn, *args, timeout=timeout)

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture(scope="session")
def ca():  # type: ignore[no-untyped-def]
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl_context(ca) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_ssl_context(ca) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture(scope="session")
def cert_files(ca, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Paths (cert, key, ca) on disk for the CLI and ``ca_file=``."""
    d = tmp_path_factory.mktemp("certs")
    leaf = ca.issue_cert("localhost", "127.0.0.1", "::1")
    cert, key, cafile = d / "cert.pem", d / "key.pem", d / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    for extra in leaf.cert_chain_pems[1:]:
        extra.write_to_path(str(cert), append=True)
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(cafile))
    return str(cert), str(key), str(cafile)
