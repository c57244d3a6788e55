"""The README's adapter snippets run as written (asyncio echo; FastAPI app on uvicorn with our class)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.ports import unused_port

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_asyncio_snippet_echoes() -> None:
    code = next(b for b in blocks() if "from wsproto_lite.adapters.asyncio import serve, connect" in b)
    printed: list[Any] = []
    code = code.replace("8765", str(unused_port())).replace("print(", "printed.append(")
    exec(compile(code, "README.md", "exec"), {"printed": printed})
    assert printed == ["hello"]


def test_fastapi_snippet_on_uvicorn_with_our_class() -> None:
    pytest.importorskip("fastapi")
    from tests.adapters.uvicorn_helpers import run, uvicorn_server
    from wsproto_lite.adapters.asyncio import connect

    code = next(b for b in blocks() if "from fastapi import FastAPI, WebSocket" in b)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)

    async def main() -> None:
        async with uvicorn_server(namespace["app"]) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:  # type: ignore[attr-defined]
                await ws.send("hi")
                assert await ws.recv() == "hi"

    run(main())
