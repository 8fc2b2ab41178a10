"""The `coord` console script's first step, before coord's modules load.

Loading them takes about a second (pydantic builds the inventory's schemas, paramiko and rich
load), and :mod:`coordinator.interrupts` can only take over once they have. A Ctrl-C in that
second raised ``KeyboardInterrupt`` inside an import and printed its traceback; here it ends
coord as a Ctrl-C does later on: ``interrupted`` and exit status 130. Nothing has touched a
host yet, so there is nothing to clean up.
"""

from __future__ import annotations

import sys


def entry() -> None:
    """The `coord` console script: :func:`coordinator.cli.entry` once it has loaded."""
    try:
        from coordinator import cli  # noqa: PLC0415 - imported here so Ctrl-C can be caught
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    cli.entry()
