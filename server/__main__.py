"""``python -m server``: see ``server/cli.py``."""

from .cli import main

raise SystemExit(main())
