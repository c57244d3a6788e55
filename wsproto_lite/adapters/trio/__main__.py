"""``python -m wsproto_lite.adapters.trio [--host H] [--port P]``: an echo server, until Ctrl-C."""

from .echo import main

main()
