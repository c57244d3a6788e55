"""``app``: the hub as an ASGI application on its own, for ASGI servers started from their command line
(``uvicorn``/``hypercorn``/``daphne tests.server.hub.asgi_hub_app:app``); lifespan starts and stops it."""

from __future__ import annotations

from wsproto_lite.hub.asgi import HubASGI
from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.hub import HubLimits

app = HubASGI(config=HubConfig(limits=HubLimits(connect_timeout=1.0)))
