"""``python -m benchmarks [--quick] [--only recv,send,echo,scale,hub,adapters] [--reps N] [--out DIR]``.

``--only hub`` writes RESULTS-hub.md and ``--only adapters`` (not part of the default run: uvicorn with our
class vs its own classes, our asyncio adapter vs websockets) RESULTS-adapters.md instead of RESULTS.md."""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import sys
import tempfile
import time

from . import recv, report, send
from .peers import VARIANTS
from .report import Table
from .worker import Pool

ALL = ("recv", "send", "echo", "scale", "hub")
EXTRA = ("adapters",)  # only when asked for by name

METHOD = """<details><summary>How it is measured</summary>

- **recv**: the input is built by `benchmarks/frames.py` (no WebSocket library): N masked client frames,
  each with its own key, ASCII JSON-like text or random bytes, cut in 64 KiB chunks. Each implementation
  gets an already-handshaken server-side connection and the same chunks; the clock runs until every
  message reached the application as `str` (UTF-8 validated) or `bytes`. Counts, total length, type and
  the content of the first and last message are checked. websockets' sans-IO layer yields frames: the
  adapter decodes text as its asyncio layer does; wsproto yields message pieces: the adapter joins them;
  aiohttp's reader queue is drained directly (what `ws.receive()` returns).
- **send**: the same payloads turned into wire bytes by a handshaken connection (server: unmasked,
  client: masked with a fresh key per frame), from `str` for text. Outputs are what each library hands
  the transport (wsproto-lite: `buffers_to_send()`, no copy; websockets: `data_to_send()`; aiohttp: the
  `transport.write` calls; wsproto: `send()` bytes). First and last frame are parsed and compared.
- Every sans-IO implementation runs in its own worker process (that is how C accelerations are turned
  off), measurements are interleaved repetition by repetition, each timed window lasts at least 50 ms
  (fast implementations repeat the case on fresh connections) after one untimed warm-up round, and the
  workers run with fixed glibc malloc thresholds (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`)
  so that large copies do not page-fault in some processes and not in others.
- **echo** and **scale**: each server in its own process (`python -m server echo` for us, peers in
  `benchmarks/servers.py`, our broadcast server in `benchmarks/ours_server.py`), all without compression
  or keepalive pings, driven by the same hand-written blocking/epoll client in `benchmarks/loopback.py`.
- **hub**: `python -m server hub`, python-socketio on uvicorn and a websockets `broadcast` server
  (`benchmarks/hub_peers.py`), each in its own process, driven by one load generator
  (`benchmarks/hub/loadgen.py`: raw sockets + `wsproto_lite.ClientConnection` in epoll loops, the
  subscribers in worker processes, `fleet.py`) that stamps every publication with `time.monotonic_ns()`;
  details under the table.
</details>"""
HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (a few seconds)")
    ap.add_argument(
        "--only", default=",".join(ALL), help="comma-separated subset of " + ",".join(ALL + EXTRA)
    )
    ap.add_argument("--reps", type=int, default=None, help="repetitions per measurement (median)")
    ap.add_argument("--out", default=None, help="where RESULTS.md and charts go (default: benchmarks/)")
    ap.add_argument("--no-charts", action="store_true")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(ALL + EXTRA)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    reps = args.reps or (1 if args.quick else 5)
    hub_reps = args.reps or (1 if args.quick else 3)  # the hub group alone takes ~1 minute per repetition
    out_dir = args.out or (
        os.path.join(tempfile.gettempdir(), "wsproto-lite-bench-quick") if args.quick else HERE
    )
    os.makedirs(out_dir, exist_ok=True)

    started = time.monotonic()
    load_start = os.getloadavg()[0]
    tables: list[Table] = []
    infos: dict[str, dict[str, str]] = {}
    unavailable: dict[str, str] = {}
    extra_notes: list[str] = []

    if "recv" in only or "send" in only:
        pool = Pool(recv.VARIANTS)
        try:
            infos.update({n: w.info for n, w in pool.workers.items()})
            unavailable.update(pool.unavailable)
            for bench, fn in (("recv", recv.run), ("send", send.run)):
                if bench in only:
                    res = fn(pool, quick=args.quick, reps=reps)
                    for t in res if isinstance(res, list) else [res]:
                        print(t.console(), "\n", flush=True)
                        tables.append(t)
        finally:
            pool.close()

    if "echo" in only:
        from . import echo

        for t in echo.run(quick=args.quick, reps=reps, infos=infos, notes=extra_notes):
            print(t.console(), "\n", flush=True)
            tables.append(t)

    if "scale" in only:
        from . import scale

        for t in scale.run(quick=args.quick, reps=reps, infos=infos, notes=extra_notes):
            print(t.console(), "\n", flush=True)
            tables.append(t)

    if "hub" in only:
        from . import hub

        for t in hub.run(quick=args.quick, reps=hub_reps, infos=infos, notes=extra_notes):
            print(t.console(), "\n", flush=True)
            tables.append(t)

    if "adapters" in only:
        from . import adapters

        for t in adapters.run(quick=args.quick, reps=reps, infos=infos, notes=extra_notes):
            print(t.console(), "\n", flush=True)
            tables.append(t)

    charts: dict[str, str] = {}
    if not args.no_charts:
        for t in tables:
            path = os.path.join(out_dir, f"chart-{t.key}.png")
            if report.chart(t, path):
                charts[t.key] = path
        if tables and not charts and importlib.util.find_spec("matplotlib") is None:
            extra_notes.append("charts skipped (matplotlib not installed)")

    elapsed = time.monotonic() - started
    header = [
        "# wsproto-lite benchmarks" + (" (quick smoke run: numbers are meaningless)" if args.quick else ""),
        "",
        "Generated by `python -m benchmarks"
        + (" --quick" if args.quick else "")
        + (f" --only {args.only}" if args.only != ",".join(ALL) else "")
        + "`"
        + f" on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s.",
        f"Python {platform.python_version()} ({platform.python_implementation()}), {platform.machine()}, "
        f"{os.cpu_count()} CPUs, 1-minute load average {load_start:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end. The machine is shared and noisy: only ratios within one run "
        "mean anything. "
        f"Every number is the median of {hub_reps if only == ['hub'] else reps} repetition(s); "
        "implementations are interleaved "
        "repetition by repetition.",
        "",
        "| implementation | version | accelerations active | note |",
        "|---|---|---|---|",
    ]
    for name, info in infos.items():
        note = info.get("note") or (VARIANTS[name].note if name in VARIANTS else "")
        header.append(f"| {name} | {info.get('version', '?')} | {info.get('accelerations', '?')} | {note} |")
    for name, why in unavailable.items():
        header.append(f"| {name} | - | - | not measured: {why} |")
    header += [""] + [f"- {n}" for n in extra_notes] + ["", METHOD, ""]
    single = {"hub": "RESULTS-hub.md", "adapters": "RESULTS-adapters.md"}
    results = os.path.join(out_dir, single.get(only[0], "RESULTS.md") if len(only) == 1 else "RESULTS.md")
    report.write_results(results, header, tables, charts)
    print(f"wrote {results} ({len(charts)} charts) in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
