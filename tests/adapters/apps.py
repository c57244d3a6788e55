"""Small FastAPI and Starlette apps with WebSocket endpoints, served by uvicorn with our class in tests.

``uvicorn tests.adapters.apps:fastapi_app --ws wsproto_lite.adapters.uvicorn:WSProtoLiteProtocol`` serves one.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect, WebSocketException, status
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket as StarletteWebSocket

#: What the apps saw when clients went away: (endpoint, code, reason).
disconnects: list[tuple[str, int, str | None]] = []

fastapi_app = FastAPI()


@fastapi_app.websocket("/chat/{name}")
async def chat(websocket: WebSocket, name: str, token: str = "") -> None:
    if token != "s3cret":  # raised before accept: Starlette sends websocket.close, uvicorn answers 403
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
    offered = websocket.scope["subprotocols"]
    await websocket.accept(subprotocol="chat.v1" if "chat.v1" in offered else None)
    try:
        while True:
            data = await websocket.receive_json()
            await websocket.send_json({"from": name, "echo": data})
    except WebSocketDisconnect as exc:
        disconnects.append(("fastapi", exc.code, exc.reason))


async def starlette_echo(websocket: StarletteWebSocket) -> None:
    if websocket.headers.get("authorization") != "Bearer ok":
        await websocket.send_denial_response(PlainTextResponse("no entry", status_code=401))
        return
    await websocket.accept(headers=[(b"x-served-by", b"starlette")])
    async for data in websocket.iter_bytes():
        if data == b"bye":
            await websocket.close(code=4001, reason="as you wish")
            return
        await websocket.send_bytes(data[::-1])
    disconnects.append(("starlette", 1000, None))


starlette_app = Starlette(routes=[WebSocketRoute("/reverse", starlette_echo)])

Scope = dict[str, Any]
