"""The C extensions built with AddressSanitizer and UndefinedBehaviorSanitizer, under the property tests.

The build and the run are :mod:`tests.wsproto_lite.sanitized` (CI runs it on every core test in a step
of its own); here, in the normal test run, it checks the tests that drive the C code hardest: masking,
the payload buffer, the reader with its compiled fast case, and the fan-out loop (``_cfanout.c``).
Skipped without a C compiler, the Python headers or libasan.
"""

from __future__ import annotations

import os

import pytest

from . import sanitized

TESTS = ["test_speedups.py", "test_reader.py", "test_reader_compiled.py", "test_cfanout.py"]


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("WSPROTO_LITE_NO_SPEEDUPS", "") not in ("", "0"),
    reason="the pure-Python pass of CI: the sanitized build is checked in the other one",
)
def test_reader_and_masking_properties_under_address_and_ub_sanitizers() -> None:
    status, report = sanitized.run(TESTS)
    if status == sanitized.UNAVAILABLE:
        pytest.skip(report)
    assert status == 0, report
    assert " passed" in report and "AddressSanitizer" not in report and "runtime error" not in report
