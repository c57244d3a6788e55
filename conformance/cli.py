"""``python -m conformance {server,client,all}``: the Autobahn testsuite in one command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from conformance import paths, spec
from conformance.runner import IMPLS, HarnessError, RunOptions, run_client_role, run_server_role

EPILOG = """\
examples:
  python -m conformance server                  # wstest fuzzingclient -> our echo server
  python -m conformance client --cases '1.*'    # our client driver -> wstest fuzzingserver
  python -m conformance all --ci                # both roles, CI preset
  python -m conformance server --impl websockets   # dev stand-in (pip install websockets)
  python -m conformance server --impl uvicorn-ours --port 9311   # ASGI echo on uvicorn, our class
                                # (uvicorn-wsproto, uvicorn-websockets-sansio: uvicorn's own classes)

exit status: 0 every case OK/INFORMATIONAL (close OK/INFORMATIONAL), 1 otherwise,
2 no report (wstest missing: bash conformance/setup.sh).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    ap = argparse.ArgumentParser(
        prog="python -m conformance",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("role", choices=["server", "client", "all"])
    ap.add_argument(
        "--cases", default="", help="comma-separated case patterns (default: all), e.g. '1.*,5.*'"
    )
    ap.add_argument("--exclude", default="", help="comma-separated case patterns to skip")
    ap.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="permessage-deflate on (default); --no-compression also skips 12.* and 13.*",
    )
    ap.add_argument(
        "--ci",
        action="store_true",
        help="CI preset: skip the 12.*/13.* cases with 32-128 KiB messages "
        "(every deflate subgroup still runs with messages up to 16 KiB)",
    )
    ap.add_argument(
        "--port",
        type=int,
        default=None,
        help="port of the server under test / of wstest's fuzzingserver (default: a free one)",
    )
    ap.add_argument(
        "--impl",
        choices=sorted(IMPLS),
        default="wsproto-lite",
        help="implementation under test; 'websockets' is a development stand-in; "
        "'uvicorn-*' an ASGI echo app on uvicorn with our WebSocket class or one of uvicorn's",
    )
    ap.add_argument(
        "--reports",
        type=Path,
        default=paths.REPORTS_DIR,
        help="where reports and logs go (default: conformance/reports)",
    )
    ap.add_argument(
        "--results-md",
        type=Path,
        default=None,
        help="summary file to update (default: conformance/RESULTS.md for wsproto-lite, "
        "REPORTS/RESULTS-<impl>.md for a stand-in)",
    )
    ap.add_argument("--timeout", type=float, default=3600.0, help="limit per role, seconds (default 3600)")
    ap.add_argument(
        "--case-timeout",
        type=float,
        default=120.0,
        help="client driver: give up on one case after this many seconds",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the requested role(s), return the worst exit status."""
    a = build_parser().parse_args(argv)
    a.reports.mkdir(parents=True, exist_ok=True)
    results_md = a.results_md or (
        paths.RESULTS_MD if a.impl == "wsproto-lite" else a.reports / f"RESULTS-{a.impl}.md"
    )
    opts = RunOptions(
        impl=a.impl,
        cases=spec.split_patterns(a.cases),
        exclude=spec.split_patterns(a.exclude),
        compression=a.compression,
        ci=a.ci,
        port=a.port,
        reports=a.reports.resolve(),
        results_md=results_md,
        timeout=a.timeout,
        case_timeout=a.case_timeout,
    )
    roles = ["server", "client"] if a.role == "all" else [a.role]
    status: dict[str, int] = {}
    try:
        for role in roles:
            run = run_server_role if role == "server" else run_client_role
            status[role] = run(opts)
    except HarnessError as e:
        print(f"conformance: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nconformance: interrupted", file=sys.stderr)
        return 130
    if len(status) > 1:
        words = {0: "PASS", 1: "FAIL", 2: "INCOMPLETE"}
        print("\nconformance: " + ", ".join(f"{r} role {words.get(c, c)}" for r, c in status.items()))
    return max(status.values())
