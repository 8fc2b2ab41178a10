"""An open loop's schedule per client and repetition, pure: what the terminal summary and the
report show so that a rate not kept is visible beside the latencies it shaped.

Each agent's window intervals of an open loop carry the schedule's counts
(:class:`~coordinator.core.figures.IntervalRecord`: ``sent``, ``late``, ``late_waiting``,
``not_sent``, ``lateness_max_usec``, ``behind_schedule``, ``loop_behind``). A row here is one
client in one repetition: its achieved rate, the requests it sent more than 1 ms late and how
many of those queued behind the server, the most it had not sent at an interval's end, its
largest lateness, and in how many intervals it was behind its schedule, by its own fault or any.
A closed loop has no rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.core.figures import Repetition


@dataclass(frozen=True)
class ScheduleRow:
    """One client's open-loop schedule in one repetition's window."""

    repetition: int
    host: str
    sent_per_sec: float
    late: int
    late_waiting: int | None  # None: a document older than the field
    not_sent: int  # the largest at an interval's end
    lateness_max_usec: int
    loop_behind: int  # intervals in which the load process itself fell behind
    behind: int  # intervals behind for any reason (the server's stalls included)
    intervals: int


def schedule_rows(repetitions: Sequence[Repetition]) -> list[ScheduleRow]:
    """One row per open-loop agent and repetition, in repetition then host order."""
    rows = []
    for repetition in repetitions:
        for agent in sorted(repetition.agents, key=lambda a: a.host):
            window = [i for i in agent.intervals if i.in_window and i.sent is not None]
            if not window:
                continue
            waiting = [i.late_waiting for i in window]
            rows.append(ScheduleRow(
                repetition=repetition.index,
                host=agent.host,
                sent_per_sec=agent.sent_per_sec or 0.0,  # set wherever intervals sent
                late=sum(i.late or 0 for i in window),
                late_waiting=None if None in waiting else sum(w or 0 for w in waiting),
                not_sent=max(i.not_sent or 0 for i in window),
                lateness_max_usec=max(i.lateness_max_usec or 0 for i in window),
                loop_behind=sum(1 for i in window if i.load_fell_behind),
                behind=sum(1 for i in window if i.behind_schedule),
                intervals=len(window),
            ))
    return rows


SCHEDULE_HEADERS = ("rep", "client", "sent/s", "late > 1 ms", "of them waiting on the server",
                    "not sent (most)", "largest lateness ms", "intervals behind: own / any")


def schedule_cells(row: ScheduleRow) -> tuple[str, ...]:
    """A row's cells under :data:`SCHEDULE_HEADERS`, as the terminal and the report print
    them."""
    waiting = "-" if row.late_waiting is None else f"{row.late_waiting:,}"
    return (str(row.repetition), row.host, f"{row.sent_per_sec:,.0f}", f"{row.late:,}", waiting,
            f"{row.not_sent:,}", f"{row.lateness_max_usec / 1000:,.3f}",
            f"{row.loop_behind} / {row.behind} of {row.intervals}")
