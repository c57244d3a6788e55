"""Adapters: the sans-IO core (``wsproto_lite``) embedded in other I/O stacks, one module or package each.

Each adapter is short enough to read in one sitting and doubles as the documentation of how to drive the
core from an event loop: feed it bytes, act on its events, write what it queues, close the transport when
it says so. The third-party library each one needs is an optional extra of the package:

- :mod:`wsproto_lite.adapters.asyncio`: ``serve()`` and ``connect()`` on asyncio, with the websockets
library's API.
- :mod:`wsproto_lite.adapters.uvicorn`: ``WSProtoLiteProtocol``, a WebSocket protocol class for uvicorn (and
through it
  FastAPI, Starlette, Django Channels): ``uvicorn app:app --ws
  wsproto_lite.adapters.uvicorn:WSProtoLiteProtocol``.
  ``pip install 'wsproto-lite[uvicorn]'``.
- :mod:`wsproto_lite.adapters.trio`: a server and a client on trio streams, shaped like trio-websocket
  (``serve_websocket``, ``open_websocket_url``, ``get_message``, ``send_message``, ``aclose``).
  ``pip install 'wsproto-lite[trio]'``.

The asyncio-based two drive the core through :class:`wsproto_lite.adapters._protocol.CoreProtocol`, the one
piece that
moves bytes and time between an asyncio transport and a ``wsproto_lite`` connection. Nothing here is
imported by this package itself: ``import wsproto_lite.adapters`` works without any extra installed.
"""
