"""What the benchmarks' Markdown tables share: the machine line, p50/p95 cells (one
percentile rule: `stream.stats.percentile`), optional numbers and the load average."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Sequence

from stream.stats import percentile


def machine() -> str:
    """``<processor>, <n> CPUs``: how each report's "Machine:" line starts."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def p50_p95(values: Sequence[float], digits: int = 2) -> str:
    """Two table cells, ``p50 | p95`` of `values`, with `digits` decimals."""
    return f"{percentile(values, 50):.{digits}f} | {percentile(values, 95):.{digits}f}"


def fmt(value: float | None, digits: int = 0) -> str:
    """A figure that may be missing (None: ``–``)."""
    return "–" if value is None else f"{value:.{digits}f}"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (``?`` where the system has none)."""
    try:
        return ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def render(lines: Iterable[str]) -> str:
    """A report's lines as one Markdown text ending in a newline."""
    return "\n".join(lines) + "\n"
