"""Run wstest, additionally printing one line per finished case.

Runs under the Python 2.7 virtualenv (``py27/bin/python -u wstest_shim.py
-m fuzzingclient -s spec.json``). wstest prints "Running test case ID ..."
when a case starts but nothing when it ends; this wraps
``FuzzingFactory.logCase`` to print::

    @@case-result <id> <behavior> <behaviorClose> <duration-ms>

so the Python 3 runner can show failures live. It also makes fuzzingserver
listen on WSTEST_INTERFACE (default 127.0.0.1) instead of every interface.
Keep this file Python 2 valid.
"""

import os
import sys

from autobahntestsuite import fuzzing
from autobahntestsuite.wstest import run

MARKER = "@@case-result"

_log_case = fuzzing.FuzzingFactory.logCase


def _log_case_and_print(self, results):
    _log_case(self, results)
    sys.stdout.write(
        "%s %s %s %s %s\n"
        % (
            MARKER,
            results.get("id"),
            results.get("behavior"),
            results.get("behaviorClose"),
            results.get("duration"),
        )
    )
    sys.stdout.flush()


fuzzing.FuzzingFactory.logCase = _log_case_and_print

_listen_ws = fuzzing.listenWS


def _listen_ws_loopback(factory, contextFactory=None, backlog=50, interface=""):
    return _listen_ws(
        factory, contextFactory, backlog, interface or os.environ.get("WSTEST_INTERFACE", "127.0.0.1")
    )


fuzzing.listenWS = _listen_ws_loopback

if __name__ == "__main__":
    sys.argv[0] = "wstest"
    sys.exit(run())
