"""A minimal Django Channels project: a chat consumer whose rooms are groups on the in-memory layer.

``application()`` configures Django (once) and returns the ASGI application:
``ProtocolTypeRouter({"websocket": URLRouter([path("ws/chat/<room>/", ChatConsumer.as_asgi())])})``.
"""

from __future__ import annotations

from typing import Any


def configure() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests-only",
            ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=["channels"],
            CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
            USE_TZ=True,
        )
        django.setup()


def application() -> Any:
    configure()
    from channels.generic.websocket import AsyncWebsocketConsumer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    class ChatConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
        room = ""

        async def connect(self) -> None:
            self.room = "chat_" + self.scope["url_route"]["kwargs"]["room"]
            await self.channel_layer.group_add(self.room, self.channel_name)
            await self.accept()

        async def disconnect(self, code: int) -> None:
            await self.channel_layer.group_discard(self.room, self.channel_name)

        async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
            await self.channel_layer.group_send(self.room, {"type": "chat.message", "text": text_data})

        async def chat_message(self, event: dict[str, Any]) -> None:
            await self.send(text_data=event["text"])

    return ProtocolTypeRouter({"websocket": URLRouter([path("ws/chat/<room>/", ChatConsumer.as_asgi())])})
