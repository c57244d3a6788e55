"""Filesystem locations used by the harness (all overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
AUTOBAHN_DIR = Path(os.environ.get("AUTOBAHN_DIR", HERE / ".autobahn"))
PY27 = AUTOBAHN_DIR / "py27" / "bin" / "python"
WSTEST_SHIM = HERE / "wstest_shim.py"
SETUP_SH = HERE / "setup.sh"
REPORTS_DIR = Path(os.environ.get("CONFORMANCE_REPORTS", HERE / "reports"))
RESULTS_MD = HERE / "RESULTS.md"


def outdir(reports: Path, role: str) -> Path:
    """Autobahn's report directory for *role* ("server" or "client")."""
    return reports / ("servers" if role == "server" else "clients")
