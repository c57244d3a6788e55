"""Run one role: start the implementation under test and wstest, stream progress, summarise."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from conformance import paths, procs, spec, summary
from conformance.progress import Reporter

MAX_MESSAGE_SIZE = 67108864  # 64 MiB: 9.* sends messages up to 16 MiB


@dataclass(frozen=True)
class Impl:
    """How to start one implementation's echo server and client driver."""

    agent: str
    server_argv: tuple[str, ...]  # after "python"; --host/--port/... are appended
    driver_module: str


IMPLS: dict[str, Impl] = {
    "wsproto-lite": Impl("wsproto-lite", ("-m", "server", "echo"), "conformance.client_driver"),
    # Development stand-in on the third-party websockets package (conformance/standin/).
    "websockets": Impl(
        "websockets", ("-m", "conformance.standin.echo_server"), "conformance.standin.client_driver"
    ),
    # An ASGI echo app on uvicorn (server role only): our protocol class, and uvicorn's two for comparison.
    **{
        f"uvicorn-{ws}": Impl(f"uvicorn-{ws}", ("-m", "conformance.uvicorn_echo", "--ws", ws), "")
        for ws in ("ours", "wsproto", "websockets-sansio")
    },
}


@dataclass
class RunOptions:
    """Everything one role's run needs."""

    impl: str = "wsproto-lite"
    cases: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    compression: bool = True
    ci: bool = False
    port: int | None = None
    reports: Path = paths.REPORTS_DIR
    results_md: Path | None = paths.RESULTS_MD
    timeout: float = 3600.0
    case_timeout: float = 120.0

    def effective_exclude(self) -> list[str]:
        """--exclude plus the --ci preset plus 12.*/13.* without compression."""
        out = list(self.exclude)
        if self.ci:
            out += spec.CI_EXCLUDE
        if not self.compression:
            out += spec.COMPRESSION_GROUPS
        return list(dict.fromkeys(out))


class HarnessError(RuntimeError):
    """The run could not happen (missing wstest, server did not start, timeout...)."""


def wstest_argv(mode: str, spec_path: Path) -> list[str]:
    """wstest (through the progress shim) in *mode* with *spec_path*."""
    if not paths.PY27.exists():
        raise HarnessError(f"wstest is not installed ({paths.PY27} missing): run bash conformance/setup.sh")
    argv = [str(paths.PY27), "-u", str(paths.WSTEST_SHIM), "-m", mode, "-s", str(spec_path)]
    if mode == "fuzzingserver":
        argv += ["--webport", "0"]  # no extra HTTP server on 8080 (on every interface)
    return argv


class Wstest:
    """A wstest subprocess whose stdout goes to a log file and a Reporter."""

    def __init__(self, argv: list[str], log_path: Path, reporter: Reporter) -> None:
        self.log = open(log_path, "w", encoding="utf-8")
        self.reporter = reporter
        self.proc = procs.start(argv, None, paths.REPO_ROOT, stdout_pipe=True)
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            self.log.write(line)
            self.log.flush()
            self.reporter.feed(line)

    def wait(self, timeout: float) -> int:
        """Wait for wstest to exit on its own; HarnessError on timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"wstest still running after {timeout:.0f} s") from None

    def stop(self) -> None:
        """Stop wstest (if running) and close the log."""
        procs.stop(self.proc)
        self.thread.join(timeout=5)
        self.reporter.close()
        self.log.close()


def _pick_port(opts: RunOptions) -> int:
    """--port (which must be free: a stranger listening there would be tested) or a free one."""
    if opts.port is None:
        return procs.free_port()
    if procs.port_accepts(opts.port):
        raise HarnessError(f"port {opts.port} is already in use on {procs.HOST}")
    return opts.port


def _prepare_outdir(opts: RunOptions, role: str) -> Path:
    outdir = paths.outdir(opts.reports, role)
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir(parents=True)
    return outdir


def _log(reports: Path, name: str) -> IO[bytes]:
    return open(reports / name, "wb")


def run_server_role(opts: RunOptions, out: IO[str] | None = None) -> int:
    """wstest fuzzingclient against our echo server; return summary's exit status."""
    impl = IMPLS[opts.impl]
    outdir = _prepare_outdir(opts, "server")
    port = _pick_port(opts)
    url = f"ws://{procs.HOST}:{port}"
    spec_path = spec.write_spec(
        spec.fuzzingclient_spec(url, impl.agent, outdir, opts.cases, opts.effective_exclude()),
        opts.reports / "fuzzingclient.json",
    )
    argv = wstest_argv("fuzzingclient", spec_path)
    server_argv = [
        sys.executable,
        *impl.server_argv,
        "--host",
        procs.HOST,
        "--port",
        str(port),
        "--max-message-size",
        str(MAX_MESSAGE_SIZE),
    ]
    if not opts.compression:
        server_argv.append("--no-compression")
    t0 = time.monotonic()
    incomplete: str | None = None
    reporter = Reporter("server")
    print(f"[server] {' '.join(server_argv[1:])}", file=sys.stderr)
    with _log(opts.reports, "server-role-server.log") as server_log:
        server = procs.start(server_argv, server_log, paths.REPO_ROOT, env=procs.python_env(paths.REPO_ROOT))
        wstest: Wstest | None = None
        try:
            procs.wait_for_port(port, server, timeout=30)
            wstest = Wstest(argv, opts.reports / "server-role-wstest.log", reporter)
            wstest.wait(opts.timeout)
        except (HarnessError, RuntimeError, TimeoutError) as e:
            incomplete = str(e)
        finally:
            if wstest:
                wstest.stop()
            reporter.close()
            crashed = server.poll()
            procs.stop(server)
    if crashed is not None and not incomplete:
        incomplete = f"the server exited early with status {crashed}"
    if incomplete:
        print(f"[server] {incomplete}; logs in {opts.reports}", file=sys.stderr)
    return summary.report(
        outdir,
        "server",
        impl.agent,
        opts.results_md,
        _meta(opts, time.monotonic() - t0),
        out,
        expected=reporter.progress.total,
        incomplete=incomplete,
    )


def run_client_role(opts: RunOptions, out: IO[str] | None = None) -> int:
    """Our client driver against wstest fuzzingserver; return summary's exit status."""
    impl = IMPLS[opts.impl]
    if not impl.driver_module:
        raise HarnessError(f"{opts.impl} is a server: it has no client role")
    outdir = _prepare_outdir(opts, "client")
    port = _pick_port(opts)
    url = f"ws://{procs.HOST}:{port}"
    spec_path = spec.write_spec(
        spec.fuzzingserver_spec(url, outdir, opts.cases, opts.effective_exclude()),
        opts.reports / "fuzzingserver.json",
    )
    argv = wstest_argv("fuzzingserver", spec_path)
    driver_argv = [
        sys.executable,
        "-m",
        impl.driver_module,
        "--url",
        url,
        "--agent",
        impl.agent,
        "--compression" if opts.compression else "--no-compression",
        "--max-message-size",
        str(MAX_MESSAGE_SIZE),
        "--case-timeout",
        str(opts.case_timeout),
    ]
    driver_log_path = opts.reports / "client-role-driver.log"
    t0 = time.monotonic()
    incomplete: str | None = None
    reporter = Reporter("client")
    wstest = Wstest(argv, opts.reports / "client-role-wstest.log", reporter)
    try:
        procs.wait_for_port(port, wstest.proc, timeout=60)
        print(f"[client] {' '.join(driver_argv[1:])}", file=sys.stderr)
        with open(driver_log_path, "wb") as driver_log:
            driver = procs.start(
                driver_argv, driver_log, paths.REPO_ROOT, env=procs.python_env(paths.REPO_ROOT)
            )
            try:
                code = driver.wait(timeout=opts.timeout)
            except subprocess.TimeoutExpired:
                code = None
                incomplete = f"the driver was still running after {opts.timeout:.0f} s"
            finally:
                procs.stop(driver)
        if code == 3:
            incomplete = "the driver could not import the client under test"
        elif code:
            incomplete = f"the driver exited with status {code}"
        if wstest.proc.poll() is not None:
            incomplete = incomplete or f"wstest exited early with status {wstest.proc.returncode}"
    except (HarnessError, RuntimeError, TimeoutError) as e:
        incomplete = str(e)
    finally:
        wstest.stop()
    if incomplete:
        print(f"[client] {incomplete}; see {driver_log_path}", file=sys.stderr)
    return summary.report(
        outdir,
        "client",
        impl.agent,
        opts.results_md,
        _meta(opts, time.monotonic() - t0),
        out,
        expected=reporter.progress.total,
        incomplete=incomplete,
    )


def _meta(opts: RunOptions, wall: float) -> dict[str, str]:
    exclude = [p for p in opts.effective_exclude() if not (opts.ci and p in spec.CI_EXCLUDE)]
    if opts.ci:
        exclude.append(spec.CI_DESCRIPTION)
    return {
        "implementation": opts.impl + (" (stand-in)" if opts.impl == "websockets" else ""),
        "compression": "on" if opts.compression else "off",
        "cases": ", ".join(opts.cases) or "*",
        "excluded": ", ".join(exclude) or "none",
        "wall time": _duration(wall),
        "suite": "autobahntestsuite 25.10.1",
    }


def _duration(seconds: float) -> str:
    """'5 min 43 s' (or '2.3 s' under a minute)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(seconds)
    return f"{s // 60} min {s % 60:02d} s"
