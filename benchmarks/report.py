"""Tables (console and Markdown), RESULTS.md and optional PNG charts."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from typing import Any


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n} B"


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e4:
        return f"{v / 1e3:.0f} k"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def fmt_ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def ratio_cells(
    values: dict[str, float | None], ours: str, variants: list[str], higher_is_better: bool = True
) -> list[str]:
    """``ours / peer`` for each peer (inverted when lower is better), so > 1 means we win."""
    out = []
    mine = values.get(ours)
    for v in variants:
        if v == ours:
            continue
        other = values.get(v)
        if mine is None or other is None or not mine or not other:
            out.append("n/a")
        else:
            out.append(fmt_ratio(mine / other if higher_is_better else other / mine))
    return out


@dataclass
class Table:
    title: str
    key: str
    columns: list[str]
    unit: str = ""
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)  # row label -> variant -> number
    chart_ylabel: str = "messages/s (higher is better)"

    def markdown(self) -> str:
        out = [f"### {self.title}", ""]
        if self.unit:
            out += [f"Unit: {self.unit}.", ""]
        out.append("| " + " | ".join(self.columns) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(self.columns) - 1)) + "|")
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        out += [""] + [f"- {n}" for n in self.notes] + ([""] if self.notes else [])
        return "\n".join(out)

    def console(self) -> str:
        widths = [max(len(str(c)) for c in col) for col in zip(self.columns, *self.rows, strict=True)]

        def line(cells: list[str]) -> str:
            return "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        out = [f"== {self.title} ==", f"   ({self.unit})" if self.unit else ""]
        out += [line(self.columns), line(["-" * w for w in widths])]
        out += [line(r) for r in self.rows] + [f"  * {n}" for n in self.notes]
        return "\n".join(x for x in out if x)


def chart(table: Table, path: str, log: bool = True) -> bool:
    """Grouped bar chart of ``table.data``; False when matplotlib is missing or nothing to plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = list(table.data)
    variants = sorted(
        {v for row in table.data.values() for v in row if not v.startswith("_")},
        key=lambda v: table.columns.index(v) if v in table.columns else 99,
    )
    if not labels or not variants:
        return False
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(labels) + 2), 4.5))
    width = 0.8 / len(variants)
    for i, v in enumerate(variants):
        vals = [table.data[label].get(v) or 0 for label in labels]
        ax.bar([x + i * width for x in range(len(labels))], vals, width, label=v)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(labels))], labels, rotation=20, ha="right")
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(table.chart_ylabel)
    ax.set_title(table.title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write_results(path: str, header: list[str], tables: list[Table], charts: dict[str, str]) -> None:
    """Write RESULTS.md: header lines, then each table (and its chart when there is one)."""
    out = list(header)
    for t in tables:
        out.append(t.markdown())
        if t.key in charts:
            out += [f"![{t.title}]({os.path.relpath(charts[t.key], os.path.dirname(path))})", ""]
    with open(path, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
