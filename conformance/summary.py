"""Summarise an Autobahn report (OUTDIR/index.json) and keep conformance/RESULTS.md current.

    python -m conformance.summary conformance/reports/servers [--role server] [--agent NAME]

Exit status: 0 when every case is OK or INFORMATIONAL with behaviorClose OK or
INFORMATIONAL ("100 % strict"), 1 otherwise, 2 when there is no usable report
or the run was incomplete.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from conformance.progress import GOOD, is_strict_ok

BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
ROLE_TITLES = {
    "server": "Server role (wstest fuzzingclient against our echo server)",
    "client": "Client role (our client driver against wstest fuzzingserver)",
}


def case_key(case_id: str) -> tuple[int, ...]:
    """Numeric sort key: '9.10.2' -> (9, 10, 2)."""
    return tuple(int(p) if p.isdigit() else 0 for p in case_id.split("."))


@dataclass
class Summary:
    """Per-group counts and the notable cases of one agent's run."""

    role: str
    agent: str
    groups: dict[str, Counter[str]] = field(default_factory=dict)
    not_ok: list[tuple[str, str, str]] = field(default_factory=list)
    durations_9: list[tuple[str, int]] = field(default_factory=list)
    total: int = 0
    strict_failures: int = 0

    @property
    def passed(self) -> bool:
        """True when the run is "100 % strict" (and ran at least one case)."""
        return self.total > 0 and self.strict_failures == 0


def load_index(outdir: Path) -> dict[str, dict[str, Any]]:
    """Read OUTDIR/index.json (agent -> case id -> result)."""
    with open(outdir / "index.json", encoding="utf-8") as f:
        index: dict[str, dict[str, Any]] = json.load(f)
    return index


def pick_agent(index: Mapping[str, Any], agent: str | None) -> str:
    """*agent* if given (must be present), else the only agent in *index*."""
    if agent is not None:
        if agent not in index:
            raise KeyError(f"agent {agent!r} not in report (has: {', '.join(sorted(index)) or 'none'})")
        return agent
    if len(index) != 1:
        raise KeyError(f"report has {len(index)} agents ({', '.join(sorted(index))}); pass --agent")
    return next(iter(index))


def summarize(cases: Mapping[str, Mapping[str, Any]], role: str, agent: str) -> Summary:
    """Build a Summary from one agent's case -> result mapping."""
    s = Summary(role=role, agent=agent)
    for case_id in sorted(cases, key=case_key):
        r = cases[case_id]
        behavior = str(r.get("behavior", "FAILED"))
        close = str(r.get("behaviorClose", "FAILED"))
        group = case_id.split(".")[0] + ".*"
        counts = s.groups.setdefault(group, Counter())
        counts[behavior if behavior in BEHAVIORS else "FAILED"] += 1
        counts["cases"] += 1
        if close not in GOOD:
            counts["close-not-ok"] += 1
        counts["ms"] += int(r.get("duration", 0) or 0)
        s.total += 1
        if behavior != "OK" or close != "OK":
            s.not_ok.append((case_id, behavior, close))
        if not is_strict_ok(behavior, close):
            s.strict_failures += 1
        if case_id.startswith("9."):
            s.durations_9.append((case_id, int(r.get("duration", 0) or 0)))
    s.groups = dict(sorted(s.groups.items(), key=lambda kv: case_key(kv[0][:-2])))
    return s


def format_table(s: Summary) -> str:
    """Markdown table: per-group counts, summed case durations, and a total row."""
    head = ["group", "cases", *BEHAVIORS, "close not OK", "case time (s)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    total: Counter[str] = Counter()
    for group, c in s.groups.items():
        total.update(c)
        rows.append(_row(group, c))
    rows.append(_row("**total**", total))
    return "\n".join(rows)


def _row(label: str, c: Counter[str]) -> str:
    cells = [
        str(c["cases"]),
        *(str(c[b]) for b in BEHAVIORS),
        str(c["close-not-ok"]),
        f"{c['ms'] / 1000:.1f}",
    ]
    return "| " + " | ".join([label, *cells]) + " |"


def format_summary(s: Summary, meta: Mapping[str, str] | None = None, incomplete: str | None = None) -> str:
    """The full Markdown summary of one run (used for the terminal and RESULTS.md)."""
    verdict = "PASS (100 % strict)" if s.passed else f"FAIL ({s.strict_failures} case(s) not strict)"
    if s.total == 0:
        verdict = "FAIL (no cases ran)"
    if incomplete:
        verdict = f"INCOMPLETE RUN ({incomplete}); {verdict}"
    lines = [f"Agent `{s.agent}`, {s.total} cases: **{verdict}**"]
    for k, v in (meta or {}).items():
        lines.append(f"- {k}: {v}")
    lines += ["", format_table(s), ""]
    if s.not_ok:
        lines.append(f"Cases not OK ({len(s.not_ok)}; behavior / behaviorClose):")
        lines.append("")
        lines += [f"- {c}: {b} / {bc}" for c, b, bc in s.not_ok]
    else:
        lines.append("Every case OK.")
    if s.durations_9:
        lines += ["", "9.* durations (ms): " + ", ".join(f"{c} {ms}" for c, ms in s.durations_9)]
    return "\n".join(lines)


_SECTION = "<!-- conformance:{role}:{edge} -->"


def update_results_md(path: Path, role: str, body: str, now: dt.datetime | None = None) -> None:
    """Replace *role*'s section of RESULTS.md with *body* (other role's section is kept)."""
    now = now or dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y-%m-%d %H:%M UTC")
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    sections = {r: _extract(old, r) for r in ROLE_TITLES}
    sections[role] = f"Run on {stamp}.\n\n{body.strip()}"
    out = [
        "# Autobahn testsuite results",
        "",
        "Written by `python -m conformance` (see conformance/README.md); last updated "
        f'{now.strftime("%Y-%m-%d")}. "100 % strict" = every case OK or INFORMATIONAL, with close',
        "behaviour OK or INFORMATIONAL. Wall and case times depend on the machine and its load.",
        "",
    ]
    for r, title in ROLE_TITLES.items():
        text = sections[r] or "Not run yet."
        out += [
            f"## {title}",
            "",
            _SECTION.format(role=r, edge="begin"),
            text,
            _SECTION.format(role=r, edge="end"),
            "",
        ]
    path.write_text("\n".join(out), encoding="utf-8")


def _extract(text: str, role: str) -> str:
    begin = re.escape(_SECTION.format(role=role, edge="begin"))
    end = re.escape(_SECTION.format(role=role, edge="end"))
    m = re.search(begin + r"\n(.*?)\n?" + end, text, re.S)
    return m.group(1).strip() if m else ""


def report(
    outdir: Path,
    role: str,
    agent: str | None = None,
    results_md: Path | None = None,
    meta: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
    expected: int | None = None,
    incomplete: str | None = None,
) -> int:
    """Print the summary of *outdir*, update *results_md*, return the exit status.

    *expected* is the number of cases wstest announced; fewer in the report, or an
    *incomplete* reason from the runner, make the run incomplete (status 2).
    """
    out = out or sys.stdout
    try:
        index = load_index(outdir)
        name = pick_agent(index, agent)
    except (OSError, ValueError, KeyError) as e:
        print(f"[{role}] no usable report in {outdir}: {e}", file=out)
        return 2
    s = summarize(index[name], role, name)
    if expected is not None and s.total < expected and not incomplete:
        incomplete = f"{s.total} of {expected} cases reported"
    body = format_summary(s, meta, incomplete)
    print(f"\n## {ROLE_TITLES[role]}\n\n{body}\n\nHTML report: {outdir / 'index.html'}", file=out)
    if results_md is not None:
        update_results_md(results_md, role, body)
        print(f"(updated {results_md})", file=out)
    if incomplete:
        return 2
    return 0 if s.passed else 1


def main(argv: list[str] | None = None) -> int:
    """CLI: summarise an existing report directory."""
    ap = argparse.ArgumentParser(
        prog="python -m conformance.summary",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("outdir", type=Path, help="wstest outdir holding index.json")
    ap.add_argument(
        "--role",
        choices=sorted(ROLE_TITLES),
        default=None,
        help="server or client (default: guessed from the directory name)",
    )
    ap.add_argument("--agent", default=None, help="agent to summarise (default: the only one)")
    ap.add_argument(
        "--results-md", type=Path, default=None, help="also (re)write this role's section of this RESULTS.md"
    )
    a = ap.parse_args(argv)
    role = a.role or ("client" if a.outdir.name.startswith("client") else "server")
    return report(a.outdir, role, a.agent, a.results_md)


if __name__ == "__main__":
    raise SystemExit(main())
