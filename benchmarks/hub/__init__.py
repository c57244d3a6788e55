"""The hub benchmark (issue 11), ``python -m benchmarks --only hub``: the hub against python-socketio
and a bare websockets broadcast server, driven by one load generator of our own.

- ``targets.py``: the three servers behind one driver interface (``HUB_COMMAND``: how the hub starts);
- ``loadgen.py``: publisher and subscribers as raw sockets + ``wsproto_lite.ClientConnection`` in one
  epoll loop; ``fleet.py``: the same with the subscribers spread over worker processes;
- ``bench.py``: the phases (memory, fan-out, throughput) and the table.
"""

from .bench import run

__all__ = ["run"]
