"""The sans-IO core embedded in other I/O stacks, one module per host stack.

- :mod:`adapters.asyncio`: ``serve()`` and ``connect()`` on asyncio, with the websockets library's API.
- :mod:`adapters.uvicorn`: ``WSProtoLiteProtocol``, a WebSocket protocol class for uvicorn (and through it
  FastAPI, Starlette, Django Channels): ``uvicorn app:app --ws adapters.uvicorn:WSProtoLiteProtocol``.

Both drive the core through :class:`adapters._protocol.CoreProtocol`, the one piece that moves bytes and
time between an asyncio transport and a ``wsproto_lite`` connection. Read that module first: it is the
shortest complete answer to "how do I embed the core in an event loop".
"""
