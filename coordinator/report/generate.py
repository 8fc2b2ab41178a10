"""Writing a results directory's standard files and report, from its ``results.json``.

``write_standard_files`` and ``write_report`` are what ``coord run`` calls at the end and what
``coord report DIR`` calls on any results directory (they can be regenerated at will: they
are derived from ``results.json`` alone). Every file is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

from coordinator.report.data import report_data
from coordinator.report.html import render_html
from coordinator.report.standard_files import hlog_name, interval_log, summary_csv
from coordinator.results.io import RESULTS_FILE, ResultsError, atomic_write, load_results
from coordinator.results.model import ResultsDocument

SUMMARY_CSV = "summary.csv"
REPORT_HTML = "report.html"


class NotAResultsDirectory(ResultsError):
    """What was given to report on is not a readable results directory of a supported schema:
    a usage error (exit status 2), one line naming the path."""

    exit_status = 2


def load_directory(directory: str | os.PathLike[str]) -> ResultsDocument:
    """The document of a results directory; ``NotAResultsDirectory`` (one line) if it is none,
    its results.json is not JSON or truncated, or of a schema_version coord does not read."""
    path = Path(directory)
    if not path.is_dir():
        raise NotAResultsDirectory(f"{path}: not a results directory (no such directory)")
    if not (path / RESULTS_FILE).is_file():
        raise NotAResultsDirectory(f"{path}: not a results directory (no {RESULTS_FILE})")
    try:
        return load_results(path)
    except ResultsError as exc:
        raise NotAResultsDirectory(str(exc)) from exc


def write_standard_files(directory: Path, document: ResultsDocument) -> list[Path]:
    """Write ``summary.csv`` and every repetition's ``rep-<n>.hlog`` into ``directory``."""
    written = [directory / SUMMARY_CSV]
    atomic_write(written[0], summary_csv(document).encode("utf-8"))
    for repetition in document.repetitions:
        path = directory / hlog_name(repetition.index)
        atomic_write(path, interval_log(document, repetition).encode("utf-8"))
        written.append(path)
    return written


def write_report(directory: str | os.PathLike[str], invocation: str,
                 document: ResultsDocument | None = None) -> Path:
    """Write the standard files and ``report.html`` of a results directory; the report's path.

    ``document`` is the directory's results (a run that just wrote them passes them); without
    it they are read, ``NotAResultsDirectory`` (one line) if ``directory`` is no results
    directory.
    """
    path = Path(directory)
    if document is None:
        document = load_directory(path)
    write_standard_files(path, document)
    report = path / REPORT_HTML
    atomic_write(report, render_html(report_data(document), invocation).encode("utf-8"))
    return report
