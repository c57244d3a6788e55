"""Ports for servers a test starts by number (another process, or a server given ``--port``).

A port from ``bind(("127.0.0.1", 0))`` is taken from the kernel's ephemeral range, the same range every
outgoing connection's local port comes from. Between the probe closing it and the server binding it, one
of the test's own connections (a hub worker's to Redis, a sender's to a receiver) can be given that
port, and the server's bind then fails for as long as the connection lives. The ports here are picked
below the ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``), which connections never use,
and are checked to be bindable now.
"""

from __future__ import annotations

import random
import socket

_DEFAULT_EPHEMERAL = (32768, 60999)  # Linux's default ip_local_port_range
_LOWEST = 10000  # leave the well-known and the commonly configured ports alone


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(part) for part in f.read().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return low, high


def _candidates() -> range:
    low, high = ephemeral_range()
    if low - _LOWEST >= 1000:
        return range(_LOWEST, low)
    if 65535 - high >= 1000:
        return range(high + 1, 65536)
    return range(1024, 65536)  # the range covers (nearly) everything: a bindable port is all we can ask


def unused_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, outside the ephemeral range (so still free when the server binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = _candidates()
    for _ in range(200):
        port = random.choice(candidates)
        with socket.socket(family) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue  # in use (or in TIME_WAIT): try another
        return port
    raise RuntimeError(f"no bindable port on {host} in {candidates.start}-{candidates.stop - 1}")
