"""Logging set-up shared by every command line entry point.

Its own module so that `deploy.cli` and the commands it loads (`deploy.bench`'s
benchmarks) can both use it without importing each other (that was an import cycle).
"""

from __future__ import annotations

import logging
import sys


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # aiortc/aioice are chatty at INFO about every ICE check.
    for name in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
