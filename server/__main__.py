"""``python -m server`` from a checkout: the ``wsproto-lite`` command line (wsproto_lite/server/cli.py)."""

from wsproto_lite.server.cli import main

raise SystemExit(main(prog="python -m server"))
