"""An open loop's schedule table (coordinator/core/schedule_rows.py, pure) and where it shows:
the report's page and text, and the terminal's summary after a run."""

from __future__ import annotations

import io

from rich.console import Console

from coordinator.core.schedule_rows import SCHEDULE_HEADERS, schedule_cells, schedule_rows
from coordinator.report import data
from coordinator.report.html import _schedule_table, render_html
from coordinator.report.text import render_text
from coordinator.results import load_results
from coordinator.run.view import schedule_tables
from tests.unit.test_report import FIXTURE
from tests.unit.test_verdicts import open_repetition, window_repetition, windowed


def test_a_client_behind_by_its_own_fault_counts_its_late_requests_and_intervals() -> None:
    repetition = open_repetition({5, 6, 7, 20})
    (row,) = schedule_rows([repetition])
    (agent,) = repetition.agents
    assert (row.repetition, row.host, row.intervals) == (repetition.index, "client1", 30)
    assert row.sent_per_sec == agent.sent_per_sec
    assert (row.late, row.late_waiting, row.not_sent, row.lateness_max_usec) == (1600, 0, 12, 7500)
    assert (row.loop_behind, row.behind) == (4, 4)
    assert schedule_cells(row) == (str(repetition.index), "client1", f"{row.sent_per_sec:,.0f}",
                                   "1,600", "0", "12", "7.500", "4 / 4 of 30")
    assert len(schedule_cells(row)) == len(SCHEDULE_HEADERS)


def test_requests_queued_behind_the_server_are_behind_but_not_the_loops_own() -> None:
    (row,) = schedule_rows([open_repetition({5, 6}, waiting=True)])
    assert (row.late, row.late_waiting, row.loop_behind, row.behind) == (800, 800, 0, 2)


def test_an_older_document_shows_no_split_and_reads_any_lateness_as_the_loops() -> None:
    older = windowed(open_repetition({5, 6, 7}), late_waiting=None, not_sent_waiting=None,
                     loop_behind=None)
    (row,) = schedule_rows([older])
    assert row.late_waiting is None and schedule_cells(row)[4] == "-"
    assert (row.loop_behind, row.behind) == (3, 3)


def test_a_closed_loop_has_no_schedule_and_no_table() -> None:
    assert schedule_rows([window_repetition()]) == []
    assert schedule_tables([]) == [] and _schedule_table([]) == ""
    report = data.report_data(load_results(FIXTURE))
    assert report.schedules == []
    assert "Open-loop schedule" not in render_html(report, "coord report")


def test_the_table_shows_on_the_page_in_the_text_and_in_the_terminal() -> None:
    rows = schedule_rows([open_repetition({5, 6, 7, 20}), open_repetition(set(), waiting=True)])
    assert len(rows) == 2
    page = _schedule_table(rows)
    assert "<h3>Open-loop schedule</h3>" in page and "4 / 4 of 30" in page and "0 / 0 of 30" in page
    report = data.report_data(load_results(FIXTURE))
    report.schedules.extend(rows)
    console = Console(file=io.StringIO(), width=200)
    console.print(render_text(report, "coord report"))
    console.print(*schedule_tables(rows))
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert printed.count("open-loop schedule (the window's intervals)") == 2
    assert "4 / 4 of 30" in printed
