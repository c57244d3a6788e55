"""The README's sans-IO example runs as written, against a real third-party client."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from tests.ports import unused_port

websockets_sync = pytest.importorskip("websockets.sync.client")

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_echoes() -> None:
    code = re.search(r"```python\n(import socket.*?)```", README.read_text(), re.S)
    assert code is not None
    port = unused_port()
    source = code.group(1).replace("while True:", "for _ in range(1):").replace("9001", str(port))
    source = source.replace('print("closed", event.code, event.reason)', "closed.append(event.code)")
    namespace: dict[str, object] = {"closed": []}
    server = threading.Thread(
        target=exec, args=(compile(source, "README.md", "exec"), namespace), daemon=True
    )
    server.start()
    for _ in range(100):  # wait until the listener is up (connection refused until then)
        try:
            client = websockets_sync.connect(f"ws://127.0.0.1:{port}", open_timeout=5)
            break
        except ConnectionRefusedError:
            server.join(0.05)
    with client:
        client.send("hello")
        assert client.recv(timeout=5) == "hello"
        client.send(b"\x00" * 100_000)
        assert client.recv(timeout=5) == b"\x00" * 100_000
    server.join(5)
    assert not server.is_alive()
    assert namespace["closed"] == [1000]


def test_readme_server_and_client_snippets() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    server_code = next(b for b in blocks if "class Chat(Handler)" in b)
    client_code = next(b for b in blocks if "from wsproto_lite.server.client import connect" in b)
    server_code = server_code.replace("port=8765", "port=0").replace("server.serve_forever()", "")
    namespace: dict[str, object] = {}
    exec(compile(server_code, "README.md", "exec"), namespace)
    server = namespace["server"]
    port = server.port  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)  # type: ignore[attr-defined]
    thread.start()
    try:
        printed: list[object] = []
        client_code = client_code.replace("8765", str(port)).replace("print(", "printed.append(")
        exec(compile(client_code, "README.md", "exec"), {"printed": printed})
        assert printed == ["hello"]
        from wsproto_lite.server.client import connect
        from wsproto_lite.server.errors import HandshakeError

        with pytest.raises(HandshakeError) as info:
            connect(f"ws://127.0.0.1:{port}/", timeout=5)  # no token: the handshake hook says 401
        assert info.value.status == 401
    finally:
        server.loop.call_soon_threadsafe(server.shutdown)  # type: ignore[attr-defined]
        thread.join(10)
    assert not thread.is_alive()
