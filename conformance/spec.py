"""wstest spec files for fuzzingclient (tests a server) and fuzzingserver (tests a client)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# permessage-deflate groups: meaningless without compression.
COMPRESSION_GROUPS = ["12.*", "13.*"]
# --ci preset. 12.* and 13.* are ~98 % of a full run (README.md "Timings"). Every
# subgroup (12.1-12.5: data sets, 13.1-13.7: deflate parameter negotiations) sends
# 1000 messages per case at the 18 sizes of autobahntestsuite's MSG_SIZES; --ci
# keeps every subgroup but drops the big sizes: case .8-.10 (32-128 KiB messages)
# and .13-.18 (32-128 KiB fragmented), ~85 % of the 12.*/13.* time. Explicit ids:
# wstest's wildcards match prefixes ("12.*.1" would also match 12.1.10-18).
CI_HEAVY_SIZES = (8, 9, 10, 13, 14, 15, 16, 17, 18)
CI_SUBGROUPS = [f"12.{i}" for i in range(1, 6)] + [f"13.{i}" for i in range(1, 8)]
CI_EXCLUDE = [f"{g}.{n}" for g in CI_SUBGROUPS for n in CI_HEAVY_SIZES]
CI_DESCRIPTION = "--ci preset: 12.*/13.* cases .8-.10 and .13-.18 (32-128 KiB messages)"


def split_patterns(value: str | None) -> list[str]:
    """'1.*, 5.*' -> ['1.*', '5.*'] (empty or None -> [])."""
    if not value:
        return []
    return [p.strip() for p in value.split(",") if p.strip()]


def fuzzingclient_spec(
    url: str, agent: str, outdir: Path, cases: list[str], exclude: list[str]
) -> dict[str, Any]:
    """Spec for ``wstest -m fuzzingclient``: wstest connects to our server at *url*."""
    return {
        "options": {"failByDrop": False},
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": url}],
        "cases": cases or ["*"],
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }


def fuzzingserver_spec(url: str, outdir: Path, cases: list[str], exclude: list[str]) -> dict[str, Any]:
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
