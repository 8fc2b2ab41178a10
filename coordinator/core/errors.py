"""coord's exception tree.

Every failure a user can cause or fix is a ``CoordError``; the CLI prints it as one line (or,
for an inventory, one line per problem) and exits with its ``exit_status``. Anything else that
escapes is a bug and keeps its traceback.

    CoordError                      exit 1
    ├── InventoryError              exit 2: the inventory file is missing, unreadable or invalid
    ├── UsageError                  exit 2: a command-line value is wrong
    ├── LabError                    the lab cannot be built, inspected or removed
    ├── HostError                   something failed on one named host
    │   ├── HostUnreachable         no TCP connection / SSH handshake within the timeout
    │   ├── HostKeyRejected         unknown or changed SSH host key
    │   ├── SSHAuthFailed           the host refused our user or key
    │   ├── RemoteCommandFailed     a command on the host exited non-zero
    │   ├── BundleError             no agent bundle can be built for the host's interpreter
    │   └── AgentError              the agent did not start, refused us, or was lost
    │       ├── AgentAuthError      token refused or version mismatch at connect time
    │       ├── AgentLost           the agent stopped answering during a command
    │       └── LoadError           the agent's load driver refused or failed (bad password,
    │                               unreachable server...) (coordinator/remote/agent_link.py)
    ├── FleetError                  several hosts failed; carries each host's error
    ├── ResultsError                a results directory or document cannot be written or read
    │                               (coordinator/results/io.py)
    ├── RunFailed                   a repetition could not be completed (coordinator/run/runner.py)
    ├── StrictVerdicts              exit 3: `coord run --strict` and a repetition was judged
    │                               client-bound, unstable, skewed or erroneous
    └── RunInterrupted              exit 130: Ctrl-C during a run; finished repetitions kept
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


def last_line(text: str) -> str:
    """The last non-empty line of a tool's output: where tools put their one-line reason."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class CoordError(Exception):
    """Root of every error coord reports to its user as a message rather than a traceback."""

    exit_status = 1

    def lines(self) -> list[str]:
        """The message as the CLI prints it: one line per problem."""
        return [str(self)]


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in an inventory, located by file, line and path."""

    path: str
    message: str
    source: str = ""
    line: int | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where = f"{where}:{self.line}"
        parts = [part for part in (where, self.path) if part]
        prefix = ": ".join(parts)
        label = "warning: " if self.severity == "warning" else ""
        return f"{prefix}: {label}{self.message}" if prefix else f"{label}{self.message}"


class InventoryError(CoordError):
    """The inventory cannot be used; carries every problem found, not just the first."""

    exit_status = 2

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def lines(self) -> list[str]:
        return [str(problem) for problem in self.problems]


class UsageError(CoordError):
    """A command-line argument or option is wrong."""

    exit_status = 2


class LabError(CoordError):
    """The lab cannot be built, inspected or torn down (not root, missing tool, clash...)."""


class HostError(CoordError):
    """A failure on one host; the message always starts with the host's name."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        super().__init__(f"{host}: {reason}")


class HostUnreachable(HostError):
    """No TCP connection or SSH handshake with the host within the connect timeout."""


class HostKeyRejected(HostError):
    """The host's SSH key is unknown (strict policy) or differs from known_hosts."""


class SSHAuthFailed(HostError):
    """The host refused the configured user or key."""


class RemoteCommandFailed(HostError):
    """A command run on the host exited with a non-zero status."""


class BundleError(HostError):
    """No agent bundle can be built for the host's interpreter (missing wheel, old Python)."""


class AgentError(HostError):
    """The agent on the host did not start, did not answer, or misbehaved."""


class AgentAuthError(AgentError):
    """The agent refused our token, or coordinator and agent versions differ."""


class AgentLost(AgentError):
    """The agent stopped answering (process gone, link cut) while a command was running."""


class FleetError(CoordError):
    """One or more hosts failed; ``failures`` maps each host name to its error."""

    def __init__(self, failures: dict[str, HostError]) -> None:
        self.failures = dict(failures)
        super().__init__(f"{len(self.failures)} host(s) failed: {', '.join(self.failures)}")

    def lines(self) -> list[str]:
        """One line per distinct reason: hosts failing alike share a line."""
        by_reason: dict[str, list[str]] = {}
        for host, error in self.failures.items():
            by_reason.setdefault(error.reason, []).append(host)
        return [f"{', '.join(sorted(hosts))}: {reason}" for reason, hosts in by_reason.items()]


class StrictVerdicts(CoordError):
    """``coord run --strict``: a verdict that fails it was flagged; one line per verdict. The
    run itself finished and its results are kept."""

    exit_status = 3

    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        super().__init__("; ".join(self.failures))

    def lines(self) -> list[str]:
        return [f"--strict: {failure}" for failure in self.failures]
