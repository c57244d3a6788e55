"""cProfile of one implementation's receive path (default: ours, 16 B text frames).

``python -m benchmarks.profile_recv [--variant wsproto-lite] [--size 16] [--kind text] [--n 50000]``
prints the top functions by own time and by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys

from . import frames
from .peers import OURS, VARIANTS, load


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile_recv")
    ap.add_argument("--variant", default=OURS, choices=sorted(VARIANTS))
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--kind", default="text", choices=("text", "binary"))
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    os.environ.update(VARIANTS[args.variant].env)
    mod = load(args.variant)
    payload = frames.make_payload(args.size, args.kind)
    chunks = frames.chunked(frames.client_stream(payload, args.n))
    adapter = mod.recv_adapter()
    count = 0
    prof = cProfile.Profile()
    prof.enable()
    for chunk in chunks:
        count += len(adapter.feed(chunk))
    prof.disable()
    assert count == args.n, count
    stats = pstats.Stats(prof, stream=sys.stdout).strip_dirs()
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main(sys.argv[1:])
