"""What `coord describe` prints: the platform as tables (one column per host, one per server)
and the differences between two runs' platforms. Rich renderables, no printing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.table import Table

from coordinator.core.platform import (
    PlatformDifference,
    PlatformRecord,
    host_facts,
    server_facts,
)

_UNKNOWN_STYLE = "dim"


def platform_tables(platform: PlatformRecord) -> list[Table]:
    """The hosts' table (a row per fact, a column per host), then the servers' if any."""
    tables = [_facts_table("hosts", {record.host: host_facts(record)
                                     for record in platform.hosts})]
    if platform.servers:
        tables.append(_facts_table("target servers", {record.server: server_facts(record)
                                                      for record in platform.servers}))
    return tables


def _facts_table(title: str, columns: Mapping[str, Mapping[str, str]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("", style="bold")
    for name in columns:
        table.add_column(name, overflow="fold")
    labels = list(dict.fromkeys(label for facts in columns.values() for label in facts))
    for label in labels:
        cells = [facts.get(label, "") for facts in columns.values()]
        table.add_row(label, *(_cell(cell) for cell in cells))
    return table


def _cell(text: str) -> str:
    escaped = text.replace("[", r"\[")
    return f"[{_UNKNOWN_STYLE}]{escaped}[/]" if text.startswith("unknown:") else escaped


def differences_table(differences: Sequence[PlatformDifference], first: str,
                      second: str) -> Table:
    """One row per differing fact: where, what, and its value in each run."""
    table = Table(title=f"{len(differences)} difference(s)", title_justify="left")
    table.add_column("")
    table.add_column("fact", style="bold")
    table.add_column(first, overflow="fold")
    table.add_column(second, overflow="fold")
    for difference in differences:
        table.add_row(difference.subject, difference.fact,
                      _cell(difference.before or "(absent)"), _cell(difference.after or "(absent)"))
    return table
