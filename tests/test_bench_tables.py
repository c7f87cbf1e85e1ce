"""The cells the benchmarks' tables share (deploy/bench/tables.py) read as each report
printed them before they were shared."""

from __future__ import annotations

import os
import platform

from deploy.bench import tables
from stream.stats import percentile


def test_p50_p95_cells_use_the_one_percentile_rule():
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    assert tables.p50_p95(values) == (
        f"{percentile(values, 50):.2f} | {percentile(values, 95):.2f}"
    )
    assert tables.p50_p95(values, 3).count(".") == 2
    assert tables.p50_p95([1.0], 0) == "1 | 1"


def test_machine_line_missing_figures_and_rendering():
    assert tables.machine() == (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    assert tables.fmt(None) == "–" and tables.fmt(12.345, 1) == "12.3"
    assert tables.render(["# a", "", "b"]) == "# a\n\nb\n"
    assert tables.loadavg() == "?" or tables.loadavg().count(",") == 2
