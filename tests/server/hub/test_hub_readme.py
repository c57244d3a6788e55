"""The README's hub snippet runs as written against a real hub."""

from __future__ import annotations

import re
from pathlib import Path

from .conftest import HubThread

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_hub_client_snippet(hub: HubThread, capsys: object) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(b for b in blocks if "from server.hub.client import HubClient" in b)
    code = code.replace("ws://127.0.0.1:8000/", hub.url.rsplit("connection/websocket", 1)[0])
    printed: list[object] = []
    exec(compile(code, "README.md", "exec"), {"print": printed.append})
    assert printed == [{"text": "hello"}]
