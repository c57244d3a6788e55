"""Both roles end to end on two cases, with the real wstest (skipped until setup.sh has run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # repo root: conformance/

from conformance import paths  # noqa: E402

pytestmark = pytest.mark.skipif(
    not paths.PY27.exists(), reason="wstest not installed (bash conformance/setup.sh)"
)


def test_all_roles_two_cases(tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance",
            "all",
            "--cases",
            "1.1.1,5.1",
            "--reports",
            str(tmp_path),
            "--results-md",
            str(md),
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "server role PASS, client role PASS" in proc.stdout
    assert (tmp_path / "servers" / "index.json").exists()
    assert (tmp_path / "clients" / "index.json").exists()
    text = md.read_text()
    assert text.count("2 cases: **PASS (100 % strict)**") == 2
    assert "[server] case 2 of 2 (5.1)" in proc.stderr  # plain progress lines without a TTY
