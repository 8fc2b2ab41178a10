"""What an ``ansible-playbook`` run did to each host, read from its default output (pure).

ansible-core ships no JSON stdout callback (that is in the ansible.posix collection, which coord
does not require), so the default callback's text is read: ``TASK [...]`` headers, the
``changed: [host]`` and ``fatal: [host]: FAILED! => {...}`` lines under them, and the
``PLAY RECAP`` counts, which are authoritative for the numbers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

TASK_HEADER = re.compile(r"^TASK \[(?P<task>.*)\] \**$")
CHANGED = re.compile(r"^changed: \[(?P<host>[^\]]+)\]")
FATAL = re.compile(r"^fatal: \[(?P<host>[^\]]+)\]: (?P<kind>FAILED|UNREACHABLE)! => (?P<body>.*)$")
RECAP_HEADER = re.compile(r"^PLAY RECAP \**$")
RECAP_LINE = re.compile(r"^(?P<host>\S+)\s+:\s+(?P<counts>(?:\w+=\d+\s*)+)$")
COUNT = re.compile(r"(\w+)=(\d+)")
MAX_REASON = 300
"""A failure's reason is cut to this many characters: it must stay one readable line."""


@dataclass(frozen=True)
class HostRecap:
    """One host's outcome: the recap's counts, the tasks that changed it, why it failed."""

    host: str
    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0
    changed_tasks: tuple[str, ...] = ()
    failure: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.unreachable == 0 and self.failed == 0

    def summary(self) -> str:
        """One line: what changed (task names), or that nothing did, or why it failed."""
        if not self.succeeded:
            return f"{self.host}: FAILED: {self.failure or 'see the ansible-playbook output'}"
        if self.changed == 0:
            return f"{self.host}: no change ({self.ok} ok, {self.skipped} skipped)"
        tasks = ", ".join(self.changed_tasks)
        return (f"{self.host}: {self.changed} changed ({tasks}); "
                f"{self.ok} ok, {self.skipped} skipped")


@dataclass(frozen=True)
class PlaybookRecap:
    """Every host's outcome, in the order of the play recap."""

    hosts: tuple[HostRecap, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> list[HostRecap]:
        return [host for host in self.hosts if not host.succeeded]

    @property
    def changed(self) -> bool:
        return any(host.changed for host in self.hosts)


def parse_playbook_output(text: str) -> PlaybookRecap:
    """Read the default callback's output; hosts absent from the recap are absent here."""
    changed_tasks: dict[str, list[str]] = {}
    failures: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    task = ""
    in_recap = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if header := TASK_HEADER.match(line):
            task = _task_name(header["task"])
            continue
        if RECAP_HEADER.match(line):
            in_recap = True
            continue
        if in_recap and (recap := RECAP_LINE.match(line)):
            found = COUNT.findall(recap["counts"])
            counts[recap["host"]] = {key: int(value) for key, value in found}
            continue
        if change := CHANGED.match(line):
            tasks = changed_tasks.setdefault(change["host"], [])
            if task not in tasks:
                tasks.append(task)
        elif fatal := FATAL.match(line):
            failures.setdefault(fatal["host"], _failure(task, fatal["kind"], fatal["body"]))
    return PlaybookRecap(tuple(
        HostRecap(
            host=host,
            ok=values.get("ok", 0),
            changed=values.get("changed", 0),
            unreachable=values.get("unreachable", 0),
            failed=values.get("failed", 0),
            skipped=values.get("skipped", 0),
            changed_tasks=tuple(changed_tasks.get(host, ())),
            failure=failures.get(host),
        )
        for host, values in counts.items()
    ))


def _task_name(header: str) -> str:
    """``coord_server : Start the instance: redis`` without the role's prefix."""
    role, separator, name = header.partition(" : ")
    return name if separator and role and " " not in role else header


def _failure(task: str, kind: str, body: str) -> str:
    """One line: the task and the module's message (``msg``), or the raw body."""
    reason = body
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("msg"):
        reason = str(document["msg"])
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 3] + "..."
    where = "unreachable" if kind == "UNREACHABLE" else f"task '{task}' failed"
    return f"{where}: {reason}"
