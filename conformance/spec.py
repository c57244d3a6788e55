"""wstest spec files for fuzzingclient (tests a server) and fuzzingserver (tests a client)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# permessage-deflate groups: meaningless without compression.
COMPRESSION_GROUPS = ["12.*", "13.*"]
# Excluded by --ci to keep both roles within CI's budget. 12.* and 13.* are the
# slowest groups (see README.md "Timings"); the first subgroup of each
# (12.1.*, 13.1.*: default deflate parameters) stays in as a smoke test.
CI_EXCLUDE = [
    "12.2.*", "12.3.*", "12.4.*", "12.5.*",
    "13.2.*", "13.3.*", "13.4.*", "13.5.*", "13.6.*", "13.7.*",
]


def split_patterns(value: str | None) -> list[str]:
    """'1.*, 5.*' -> ['1.*', '5.*'] (empty or None -> [])."""
    if not value:
        return []
    return [p.strip() for p in value.split(",") if p.strip()]


def fuzzingclient_spec(url: str, agent: str, outdir: Path, cases: list[str],
                       exclude: list[str]) -> dict[str, Any]:
    """Spec for ``wstest -m fuzzingclient``: wstest connects to our server at *url*."""
    return {
        "options": {"failByDrop": False},
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": url}],
        "cases": cases or ["*"],
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }


def fuzzingserver_spec(url: str, outdir: Path, cases: list[str],
                       exclude: list[str]) -> dict[str, Any]:
    """Spec for ``wstest -m fuzzingserver``: wstest listens on *url* for our client."""
    return {
        "url": url,
        "options": {"failByDrop": False},
        "outdir": str(outdir),
        "cases": cases or ["*"],
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }


def write_spec(spec: dict[str, Any], path: Path) -> Path:
    """Write *spec* as JSON to *path* (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return path
