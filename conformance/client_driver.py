"""Client driver for ``wstest -m fuzzingserver``, built on wsproto-lite's blocking client.

    python -m conformance.client_driver --url ws://127.0.0.1:9002 [--agent wsproto-lite]

Protocol: ``/getCaseCount`` sends one text message (the count); then, for each
case N, ``/runCase?case=N&agent=AGENT`` is echoed message by message until the
server closes; finally ``/updateReports?agent=AGENT`` makes wstest write the
reports. The client implementation is passed in as a ClientAPI, so the driver
logic is shared with the stand-in (conformance/standin/); our own client is
imported lazily by load_wsproto_lite() only.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

AGENT = "wsproto-lite"
DEFAULT_MAX_MESSAGE_SIZE = 64 * 2**20


@dataclass(frozen=True)
class ClientAPI:
    """A blocking client following the server.client contract.

    ``connect(url, timeout=, compression=, max_message_size=)`` returns a context
    manager with ``recv(timeout=None) -> str | bytes`` (raises *closed* on close),
    ``send(str | bytes)`` and ``close(code=1000, reason="")``.
    """

    connect: Callable[..., Any]
    closed: type[BaseException]
    name: str


def load_wsproto_lite() -> ClientAPI:
    """Import our client (server/client.py) only when the driver actually runs."""
    from wsproto_lite.server.client import ConnectionClosedError, connect  # noqa: PLC0415 (lazy on purpose)

    return ClientAPI(connect=connect, closed=ConnectionClosedError, name="wsproto-lite")


@dataclass
class DriverOptions:
    """Connection settings shared by every case."""

    compression: bool = True
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    connect_timeout: float = 10.0
    case_timeout: float = 120.0


class Driver:
    """Runs the fuzzingserver protocol with one ClientAPI."""

    def __init__(
        self, api: ClientAPI, base_url: str, agent: str, opts: DriverOptions, log: TextIO = sys.stdout
    ) -> None:
        self.api, self.base, self.agent, self.opts, self.log = api, base_url.rstrip("/"), agent, opts, log
        self.case_errors: dict[int, str] = {}

    def _connect(self, path: str) -> Any:
        return self.api.connect(
            self.base + path,
            timeout=self.opts.connect_timeout,
            compression=self.opts.compression,
            max_message_size=self.opts.max_message_size,
        )

    def case_count(self) -> int:
        """Ask wstest how many cases it will run."""
        with self._connect("/getCaseCount") as ws:
            count = int(ws.recv(timeout=self.opts.connect_timeout))
            self._drain(ws, self.opts.connect_timeout)
        return count

    def run_case(self, n: int) -> None:
        """Echo everything on case *n* until the server closes (or case_timeout passes)."""
        deadline = time.monotonic() + self.opts.case_timeout
        with self._connect(f"/runCase?case={n}&agent={self.agent}") as ws:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"case still open after {self.opts.case_timeout:.0f} s")
                try:
                    message = ws.recv(timeout=remaining)
                except self.api.closed:
                    return
                ws.send(message)

    def update_reports(self) -> None:
        """Tell wstest to write index.json / index.html for our agent."""
        with self._connect(f"/updateReports?agent={self.agent}") as ws:
            self._drain(ws, 60.0)  # report generation takes a few seconds

    def _drain(self, ws: Any, timeout: float) -> None:
        """Wait for the server's close, discarding anything else."""
        deadline = time.monotonic() + timeout
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                ws.recv(timeout=remaining)
        except self.api.closed:
            return
        raise TimeoutError("server did not close")

    def run(self) -> int:
        """Whole protocol; 0 unless the count or the report step failed."""
        t0 = time.monotonic()
        try:
            total = self.case_count()
        except Exception as e:  # noqa: BLE001 - report and give up
            self._print(f"getCaseCount failed: {type(e).__name__}: {e}")
            return 1
        self._print(f"{self.api.name} client, agent {self.agent}: {total} cases")
        for n in range(1, total + 1):
            try:
                self.run_case(n)
            except self.api.closed:
                pass  # closed while we were sending: a normal end for some cases
            except Exception as e:  # noqa: BLE001 - one case must not stop the run
                self.case_errors[n] = f"{type(e).__name__}: {e}"
                self._print(f"case {n}: {self.case_errors[n]}")
                if not isinstance(e, (OSError, TimeoutError)):
                    traceback.print_exc(file=self.log)
        try:
            self.update_reports()
        except self.api.closed:
            pass
        except Exception as e:  # noqa: BLE001
            self._print(f"updateReports failed: {type(e).__name__}: {e}")
            return 1
        self._print(
            f"done: {total} cases in {time.monotonic() - t0:.1f} s, "
            f"{len(self.case_errors)} with a client-side exception"
        )
        return 0

    def _print(self, text: str) -> None:
        print(text, file=self.log, flush=True)


def parse_args(argv: list[str] | None, agent: str) -> argparse.Namespace:
    """Command-line options common to every driver."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="fuzzingserver base URL, ws://127.0.0.1:PORT")
    ap.add_argument("--agent", default=agent, help=f"agent name in the reports (default {agent})")
    ap.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="offer permessage-deflate (default: yes)",
    )
    ap.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE)
    ap.add_argument(
        "--case-timeout", type=float, default=120.0, help="give up on one case after this many seconds"
    )
    return ap.parse_args(argv)


def main_with(api_loader: Callable[[], ClientAPI], agent: str, argv: list[str] | None = None) -> int:
    """Parse arguments, load the client with *api_loader*, run the driver."""
    a = parse_args(argv, agent)
    try:
        api = api_loader()
    except ImportError as e:
        print(f"cannot import the client under test: {e}", file=sys.stderr)
        return 3
    opts = DriverOptions(
        compression=a.compression, max_message_size=a.max_message_size, case_timeout=a.case_timeout
    )
    return Driver(api, a.url, a.agent, opts).run()


def main(argv: list[str] | None = None) -> int:
    """Driver for wsproto-lite's own client."""
    return main_with(load_wsproto_lite, AGENT, argv)


if __name__ == "__main__":
    raise SystemExit(main())
