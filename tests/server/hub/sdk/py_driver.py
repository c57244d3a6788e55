"""centrifuge-python (PyPI ``centrifuge-python``, asyncio) under remote control, for the hub's SDK tests.

    python py_driver.py '<options JSON>'

Same options, ops and events as ``driver.mjs`` (the centrifuge-js driver), so each scenario runs against
both SDKs: ops as JSON lines on stdin, events as JSON lines on stdout, an op's outcome as
``{"ev": "reply", "id": n, "result" | "error": ...}``. Exits by itself on stdin EOF, on ``exit`` or at the
deadline (default 60 s).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import centrifuge as cf


def emit(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


def error_of(exc: BaseException) -> dict[str, Any]:
    return {"code": getattr(exc, "code", None), "message": str(exc) or type(exc).__name__}


def info_of(info: cf.ClientInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {"user": info.user, "client": info.client, "conn_info": info.conn_info}


def pub_of(channel: str, pub: cf.Publication) -> dict[str, Any]:
    return {"channel": channel, "data": pub.data, "offset": pub.offset, "info": info_of(pub.info)}


def subscribed_of(ctx: cf.SubscribedContext | cf.ServerSubscribedContext) -> dict[str, Any]:
    position = ctx.stream_position
    return {
        "channel": ctx.channel,
        "recoverable": ctx.recoverable,
        "positioned": ctx.positioned,
        "was_recovering": ctx.was_recovering,
        "recovered": ctx.recovered,
        "offset": position.offset if position else None,
        "epoch": position.epoch if position else None,
    }


class ClientEvents(cf.ClientEventHandler):
    async def on_connecting(self, ctx: cf.ConnectingContext) -> None:
        emit({"ev": "connecting", "code": ctx.code, "reason": ctx.reason})

    async def on_connected(self, ctx: cf.ConnectedContext) -> None:
        emit({"ev": "connected", "client": ctx.client})

    async def on_disconnected(self, ctx: cf.DisconnectedContext) -> None:
        emit({"ev": "disconnected", "code": ctx.code, "reason": ctx.reason})

    async def on_error(self, ctx: cf.ErrorContext) -> None:
        emit({"ev": "error", "type": str(ctx.code), "error": error_of(ctx.error)})

    async def on_subscribing(self, ctx: cf.ServerSubscribingContext) -> None:
        emit({"ev": "server_subscribing", "channel": ctx.channel})

    async def on_subscribed(self, ctx: cf.ServerSubscribedContext) -> None:
        emit({"ev": "server_subscribed", **subscribed_of(ctx)})

    async def on_unsubscribed(self, ctx: cf.ServerUnsubscribedContext) -> None:
        emit({"ev": "server_unsubscribed", "channel": ctx.channel})

    async def on_publication(self, ctx: cf.ServerPublicationContext) -> None:
        emit({"ev": "server_publication", **pub_of(ctx.channel, ctx.pub)})


class SubscriptionEvents(cf.SubscriptionEventHandler):
    def __init__(self, channel: str) -> None:
        self.channel = channel

    async def on_subscribing(self, ctx: cf.SubscribingContext) -> None:
        emit({"ev": "subscribing", "channel": self.channel, "code": ctx.code, "reason": ctx.reason})

    async def on_subscribed(self, ctx: cf.SubscribedContext) -> None:
        emit({"ev": "subscribed", **subscribed_of(ctx)})

    async def on_unsubscribed(self, ctx: cf.UnsubscribedContext) -> None:
        emit({"ev": "unsubscribed", "channel": self.channel, "code": ctx.code, "reason": ctx.reason})

    async def on_publication(self, ctx: cf.PublicationContext) -> None:
        emit({"ev": "publication", **pub_of(self.channel, ctx.pub)})

    async def on_join(self, ctx: cf.JoinContext) -> None:
        emit({"ev": "join", "channel": self.channel, "info": info_of(ctx.info)})

    async def on_leave(self, ctx: cf.LeaveContext) -> None:
        emit({"ev": "leave", "channel": self.channel, "info": info_of(ctx.info)})

    async def on_error(self, ctx: cf.SubscriptionErrorContext) -> None:
        emit(
            {"ev": "sub_error", "channel": self.channel, "type": str(ctx.code), "error": error_of(ctx.error)}
        )


class Driver:
    def __init__(self, options: dict[str, Any]) -> None:
        self.tokens: list[str] = list(options.get("tokens", []))
        self.sub_tokens: dict[str, list[str]] = {k: list(v) for k, v in options.get("sub_tokens", {}).items()}
        kwargs: dict[str, Any] = {
            "events": ClientEvents(),
            "timeout": float(options.get("timeout", 5)),
            "name": options.get("name", "python"),
            "min_reconnect_delay": 0.1,
            "max_reconnect_delay": 1.0,
            "proxy": None,
        }
        if "token" in options:
            kwargs["token"] = options["token"]
        for name in ("data", "headers"):  # connect data; HTTP headers of the WebSocket upgrade
            if name in options:
                kwargs[name] = options[name]
        if "tokens" in options:
            kwargs["get_token"] = self.get_token
        self.client = cf.Client(options["url"], **kwargs)

    async def get_token(self) -> str:
        emit({"ev": "get_token"})
        if not self.tokens:
            raise cf.UnauthorizedError()
        return self.tokens.pop(0)

    def subscription(self, args: dict[str, Any]) -> cf.Subscription:
        channel = str(args["channel"])
        existing = self.client.get_subscription(channel)
        if existing is not None:
            return existing
        kwargs: dict[str, Any] = {
            "events": SubscriptionEvents(channel),
            "recoverable": bool(args.get("recoverable")),
            "positioned": bool(args.get("positioned")),
            "join_leave": bool(args.get("join_leave")),
        }
        if "token" in args:
            kwargs["token"] = args["token"]
        if channel in self.sub_tokens:

            async def get_sub_token(ch: str) -> str:
                emit({"ev": "get_sub_token", "channel": ch})
                if not self.sub_tokens[ch]:
                    raise cf.UnauthorizedError()
                return self.sub_tokens[ch].pop(0)

            kwargs["get_token"] = get_sub_token
        return self.client.new_subscription(channel, **kwargs)

    async def op(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("op")
        client = self.client
        if name == "connect":
            await client.connect()
            return {}
        if name == "disconnect":
            await client.disconnect()
            return {}
        if name == "subscribe":
            await self.subscription(args).subscribe()
            return {}
        if name == "unsubscribe":
            await self.subscription(args).unsubscribe()
            return {}
        if name == "publish":
            await client.publish(args["channel"], args["data"])
            return {}
        if name == "rpc":
            return {"data": (await client.rpc(args["method"], args.get("data"))).data}
        if name == "sub_publish":
            await self.subscription(args).publish(args["data"])
            return {}
        if name == "presence":
            presence = await client.presence(args["channel"])
            return {"clients": {cid: info_of(info) for cid, info in presence.clients.items()}}
        if name == "presence_stats":
            stats = await client.presence_stats(args["channel"])
            return {"num_clients": stats.num_clients, "num_users": stats.num_users}
        if name == "history":
            history = await client.history(args["channel"], limit=int(args.get("limit", 0)))
            return {
                "publications": [pub_of(args["channel"], p) for p in history.publications],
                "offset": history.offset,
                "epoch": history.epoch,
            }
        raise ValueError(f"unknown op {name!r}")

    async def run_op(self, args: dict[str, Any]) -> None:
        try:
            emit({"ev": "reply", "id": args.get("id"), "result": await self.op(args)})
        except Exception as exc:  # every SDK error is an observation to report
            emit({"ev": "reply", "id": args.get("id"), "error": error_of(exc)})


async def main(options: dict[str, Any]) -> int:
    driver = Driver(options)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    running: set[asyncio.Task[None]] = set()

    async def read_ops() -> None:
        while line := await reader.readline():
            try:
                args = json.loads(line)
            except ValueError:
                emit({"ev": "bad_op", "line": line.decode(errors="replace")})
                continue
            if args.get("op") == "exit":
                return
            task = asyncio.create_task(driver.run_op(args))
            running.add(task)
            task.add_done_callback(running.discard)

    code = 0
    try:
        await asyncio.wait_for(read_ops(), float(options.get("deadline", 60)))
    except TimeoutError:
        emit({"ev": "deadline"})
        code = 3
    stop: Callable[[], Awaitable[None]] = driver.client.disconnect
    try:
        await asyncio.wait_for(stop(), 2)
    except Exception:  # already down or stuck: the process ends anyway
        pass
    for task in running:
        task.cancel()
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
