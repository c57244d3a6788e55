"""``python -m wsproto_lite`` (the ``wsproto-lite`` console script): see ``wsproto_lite/server/cli.py``."""

from wsproto_lite.server.cli import main

raise SystemExit(main())
