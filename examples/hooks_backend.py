"""The application behind the hub (issue 21): a FastAPI backend the hub asks over HTTP.

It authenticates connections from its own session cookie, checks and rewrites publications, answers
RPCs and receives the hub's signed webhooks.  Start it and the hub (``examples/hooks.toml`` points the
hub's hooks and webhooks here; both read the webhooks' secret from the environment)::

    export WSPROTO_HUB_WEBHOOK_SECRET=$(python -c 'import secrets; print(secrets.token_hex(32))')
    uvicorn examples.hooks_backend:app --port 5000 &
    python -m server hub --config examples/hooks.toml

then log in (``curl -c jar -X POST localhost:5000/login/ann``) and open a WebSocket to
``ws://127.0.0.1:8000/connection/websocket`` with that cookie: ``connect`` needs no token, this backend
says who the connection is.  Each hook gets Centrifugo's proxy request and answers Centrifugo's proxy
response (``wsproto_lite/hub/PROTOCOL.md``, "Backend hooks").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from typing import Any

from fastapi import FastAPI, Request, Response

app = FastAPI()

#: session id (the ``sid`` cookie) -> user; your real session store here
SESSIONS: dict[str, str] = {}
BANNED_WORDS = ("spam",)
MAX_TEXT = 500


@app.post("/login/{name}")
async def login(name: str, response: Response) -> dict[str, str]:
    sid = secrets.token_urlsafe(16)
    SESSIONS[sid] = name  # your real login here
    response.set_cookie("sid", sid, httponly=True, samesite="strict")
    return {"user": name}


@app.post("/hub/connect")
async def connect(request: Request) -> dict[str, Any]:
    """The hub passes the upgrade's ``Cookie`` header (``headers = ["cookie"]`` in its config)."""
    user = SESSIONS.get(request.cookies.get("sid", ""))
    if user is None:
        return {"disconnect": {"code": 4501, "reason": "not logged in"}}  # 4500+: do not reconnect
    return {"result": {"user": user, "info": {"name": user}, "channels": [f"user:{user}"]}}


@app.post("/hub/publish")
async def publish(request: Request) -> dict[str, Any]:
    """Only ``{"text": str}`` of at most 500 characters, without banned words; stored as the server says."""
    body = await request.json()
    data = body.get("data")
    text = data.get("text") if isinstance(data, dict) else None
    if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT:
        return {"error": {"code": 1400, "message": 'a publication is {"text": up to 500 characters}'}}
    if any(word in text.lower() for word in BANNED_WORDS):
        return {"error": {"code": 1403, "message": "not allowed here"}}
    return {"result": {"data": {"text": text, "user": body.get("user", "")}}}


@app.post("/hub/rpc")
async def rpc(request: Request) -> dict[str, Any]:
    body = await request.json()
    if body.get("method") == "whoami":
        return {"result": {"data": {"user": body.get("user", ""), "client": body.get("client", "")}}}
    return {"error": {"code": 104, "message": "method not found"}}


#: the webhooks' signing secret, shared with the hub (both read WSPROTO_HUB_WEBHOOK_SECRET)
WEBHOOK_SECRET = os.environ.get("WSPROTO_HUB_WEBHOOK_SECRET", "").encode()
#: what the webhooks said, newest last (your real handling here: rooms that emptied, who came and went)
EVENTS: list[dict[str, Any]] = []


@app.post("/hub/events")
async def events(request: Request) -> Response:
    """The hub's signed webhooks: the signature is checked over the raw body before anything is read."""
    body = await request.body()
    expected = hmac.new(WEBHOOK_SECRET, body, hashlib.sha256).hexdigest()
    if not WEBHOOK_SECRET or not hmac.compare_digest(expected, request.headers.get("X-Hub-Signature", "")):
        return Response(status_code=401)  # a 4xx: the hub does not retry it
    EVENTS.extend(json.loads(body)["events"])
    return Response(status_code=204)
