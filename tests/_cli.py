"""`intervue …` (deploy/cli.py) in a subprocess, as a person in another terminal runs it."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run ``intervue ARGS`` with `env` as its only ``INTERVUE_*`` settings (none inherited
    from the test process)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INTERVUE_")}
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
