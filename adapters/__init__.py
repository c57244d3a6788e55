"""Adapters: the sans-IO core (``wsproto_lite``) embedded in other I/O stacks.

Each adapter is one module, short enough to read in one sitting, and doubles as the documentation of how to
drive the core from an event loop: feed it bytes, act on its events, write what it queues, close the
transport when it says so. The third-party library each one needs is an optional extra of the package:

- ``adapters.trio`` — a server and a client on trio streams, shaped like trio-websocket
  (``serve_websocket``, ``open_websocket_url``, ``get_message``, ``send_message``, ``aclose``).
  ``pip install 'wsproto-lite[trio]'``.

Nothing here is imported by this package itself: ``import adapters`` works without any extra installed.
"""
