"""Our trio adapter (wsproto_lite.adapters.trio) next to trio-websocket: the same echo handler on both, each
server in its
own process, driven by the raw-socket client of ``benchmarks.echo`` (32 B text messages, no compression).

    pip install -e '.[trio]' trio-websocket
    python -m benchmarks.trio_echo                 # interleaved runs; writes benchmarks/RESULTS-trio.md
    python -m benchmarks.trio_echo --reps 3 --pipelined 5000 --sequential 500 --out /tmp/r.md
"""

from __future__ import annotations

import argparse
import platform
import sys
from functools import partial
from importlib.metadata import version
from pathlib import Path

from .echo import pipelined, sequential
from .loopback import ServerProc, free_port
from .report import fmt_rate, median

IMPLS = ["wsproto_lite.adapters.trio", "trio-websocket"]
RESULTS = Path(__file__).resolve().parent / "RESULTS-trio.md"


def serve(impl: str, port: int) -> None:
    """Run ``impl``'s echo server on 127.0.0.1:port until killed (the subprocess side)."""
    import trio

    if impl == "wsproto_lite.adapters.trio":
        from wsproto_lite.adapters.trio import WebSocketRequest, serve_websocket

        async def echo(request: WebSocketRequest) -> None:
            ws = await request.accept()
            async for message in ws:
                await ws.send_message(message)

    else:
        from trio_websocket import ConnectionClosed, serve_websocket  # type: ignore[no-redef]

        async def echo(request):  # type: ignore[no-untyped-def]
            ws = await request.accept()
            try:
                while True:
                    await ws.send_message(await ws.get_message())
            except ConnectionClosed:
                pass

    trio.run(partial(serve_websocket, echo, "127.0.0.1", port, None))  # type: ignore[arg-type]


def start(impl: str) -> ServerProc:
    port = free_port()
    return ServerProc(impl, [sys.executable, "-m", "benchmarks.trio_echo", "--serve", impl, str(port)], port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trio_echo", description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--pipelined", type=int, default=20_000, help="messages per pipelined run")
    parser.add_argument("--sequential", type=int, default=2000, help="round trips per sequential run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--serve", nargs=2, metavar=("IMPL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return

    runs: dict[str, dict[str, list[float]]] = {
        i: {"pipe": [], "cpu": [], "seq": [], "lat": []} for i in IMPLS
    }
    for rep in range(args.reps):
        for impl in IMPLS if rep % 2 == 0 else IMPLS[::-1]:  # interleaved, alternating who goes first
            server = start(impl)
            try:
                pipe = pipelined(server, args.pipelined)
                seq = sequential(server.port, args.sequential)
            finally:
                server.stop()
            runs[impl]["pipe"].append(pipe["rate"])
            runs[impl]["cpu"].append(pipe["cpu_us"])
            runs[impl]["seq"].append(seq["rate"])
            runs[impl]["lat"].append(seq["latency_us"])
            print(
                f"rep {rep + 1} {impl:15} pipelined {fmt_rate(pipe['rate'])} msg/s, "
                f"{pipe['cpu_us']:.1f} µs CPU/msg; sequential {fmt_rate(seq['rate'])} rt/s",
                flush=True,
            )

    med = {impl: {key: median(values) for key, values in runs[impl].items()} for impl in IMPLS}
    ours, peer = med["wsproto_lite.adapters.trio"], med["trio-websocket"]
    lines = [
        "# wsproto_lite.adapters.trio vs trio-websocket: loopback echo",
        "",
        f"`python -m benchmarks.trio_echo --reps {args.reps} --pipelined {args.pipelined} "
        f"--sequential {args.sequential}`: the same echo handler (`async for`/`get_message` then "
        "`send_message`) on each library's `serve_websocket`, each server in its own process, driven by the "
        "raw-socket client of `benchmarks/echo.py` (32 B text messages, no compression offered). Medians of "
        f"{args.reps} interleaved runs; server CPU per message from `/proc`. A 2-core shared machine: only "
        "the ratios within this run mean anything.",
        "",
        f"Python {platform.python_version()}, trio {version('trio')}, "
        f"trio-websocket {version('trio-websocket')} (on wsproto {version('wsproto')}).",
        "",
        "| | pipelined msg/s | server CPU µs/msg | sequential round trips/s | median RTT µs |",
        "|---|---:|---:|---:|---:|",
    ]
    for impl in IMPLS:
        m = med[impl]
        lines.append(
            f"| {impl} | {fmt_rate(m['pipe'])} | {m['cpu']:.1f} | {fmt_rate(m['seq'])} | {m['lat']:.0f} |"
        )
    lines += [
        f"| **ratio** | **{ours['pipe'] / peer['pipe']:.2f}x** | **{peer['cpu'] / ours['cpu']:.2f}x** "
        f"| **{ours['seq'] / peer['seq']:.2f}x** | **{peer['lat'] / ours['lat']:.2f}x** |",
        "",
        "Ratios are ours over trio-websocket's (CPU and RTT inverted): above 1, ours is ahead.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
