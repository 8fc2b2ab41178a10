"""The agent's log file: owner-only, capped while the agent runs, with stderr following it.

``agent.log`` is rotated to ``agent.log.1`` when it would pass
:data:`agent.protocol.LOG_MAX_BYTES` (read when the log is opened), and one old file is kept:
a host never holds more than twice the cap of agent logs, however long the agent runs and
whatever other local users make it log. Every file is created mode 0600 (the log names hosts
and ports). The process's stderr (tracebacks of dying threads, the interpreter's own
complaints) is pointed at the current file, and moved along at each rotation.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from io import TextIOWrapper
from pathlib import Path

from agent import protocol

STDERR_FD = 2
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def open_log(path: Path | str) -> int:
    """The log, for appending; created readable by its owner only."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)


class AgentLogHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files are owner-only and which can carry stderr along."""

    def __init__(self, path: Path) -> None:
        self._stderr_follows = False
        super().__init__(path, maxBytes=protocol.LOG_MAX_BYTES, backupCount=1, encoding="utf-8")
        self.setFormatter(logging.Formatter(FORMAT))

    def _open(self) -> TextIOWrapper:
        return open(open_log(self.baseFilename), "a", encoding=self.encoding,
                    errors=self.errors)

    def capture_stderr(self) -> None:
        """Send the process's stderr to the log file, now and after every rotation."""
        self._stderr_follows = True
        self._point_stderr()

    def doRollover(self) -> None:
        super().doRollover()
        if self._stderr_follows:
            self._point_stderr()

    def _point_stderr(self) -> None:
        fd = open_log(self.baseFilename)
        try:
            os.dup2(fd, STDERR_FD)
        finally:
            os.close(fd)
