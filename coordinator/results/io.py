"""Writing and reading ``results.json`` and the ``.hgrm`` files of a run's directory.

Writing (``ResultsWriter.write``) goes to a temporary file in the same directory, fsynced, then
``os.replace``d over ``results.json`` (and the directory fsynced): a crash or Ctrl-C at any
instant leaves either the previous document or the new one, never a torn file, so a run loses
at most the repetition in progress.

Reading goes through ``READERS``, one reader per ``schema_version`` (pyperf's habit): a reader
turns a document of its version into the current model, so old files stay readable; an
unknown version is refused with one line. Old-format documents are kept as test fixtures
(``tests/fixtures/results-v<N>.json``). A latency figure added since a document was written
(a new percentile) is computed on reading from the histograms the document stores.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram
from pydantic import ValidationError

from agent.histograms import HistogramParams
from coordinator import __version__
from coordinator.core.errors import CoordError
from coordinator.core.figures import LATENCY_FIGURES, Latency, LatencySummary, hgrm_name
from coordinator.core.histograms import decode_histogram, percentile_distribution
from coordinator.core.reports import first_problem
from coordinator.results.model import ResultsDocument

RESULTS_FILE = "results.json"


class ResultsError(CoordError):
    """A results directory or document cannot be written or read (one line, names the path)."""



# --------------------------------------------------------------------------------------------
# Writing


def default_directory(inventory_name: str, now: datetime | None = None) -> Path:
    """``results/<date>-<time>-<inventory name>`` (local time), relative to the cwd."""
    moment = now or datetime.now().astimezone()
    return Path("results") / f"{moment:%Y%m%d-%H%M%S}-{inventory_name}"


class ResultsWriter:
    """Writes one run's directory: ``results.json`` (atomically) and ``rep-<n>.hgrm`` files.

    The directory is created if needed. An existing non-empty directory is refused, unless
    ``overwrite``: then the files this writer owns (``results.json``, ``rep-*.hgrm``, left-over
    temporary files) are removed and anything else is left alone.
    """

    def __init__(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.directory = Path(directory)
        try:
            if self.directory.exists() and not self.directory.is_dir():
                raise ResultsError(f"{self.directory}: exists and is not a directory")
            if self.directory.is_dir() and any(self.directory.iterdir()):
                if not overwrite:
                    raise ResultsError(
                        f"{self.directory}: directory is not empty (choose another --out, or "
                        "pass --overwrite)"
                    )
                for path in self._owned_files():
                    path.unlink()
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"{self.directory}: {exc.strerror or exc}") from exc

    @property
    def results_path(self) -> Path:
        return self.directory / RESULTS_FILE

    def hgrm_path(self, repetition_index: int) -> Path:
        return self.directory / hgrm_name(repetition_index)

    def write(self, document: ResultsDocument) -> Path:
        """Replace ``results.json`` with ``document``, atomically and durably."""
        text = document.model_dump_json(indent=2) + "\n"
        atomic_write(self.results_path, text.encode("utf-8"))
        return self.results_path

    def write_hgrm(self, repetition_index: int, histogram: HdrHistogram) -> Path:
        """Write ``rep-<n>.hgrm``: the histogram's percentile distribution, values in ms."""
        path = self.hgrm_path(repetition_index)
        atomic_write(path, percentile_distribution(histogram).encode("ascii"))
        return path

    def _owned_files(self) -> list[Path]:
        owned = [
            self.results_path,
            *self.directory.glob("rep-*.hgrm"),
            *self.directory.glob(f".{RESULTS_FILE}.*.tmp"),
            *self.directory.glob(".rep-*.hgrm.*.tmp"),
            *self.directory.glob("rep-*.hlog"),
            *[self.directory / name for name in ("summary.csv", "report.html")],
        ]
        return [path for path in owned if path.is_file()]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a same-directory temporary file, fsync and replace.

    The temporary file is removed on any failure, Ctrl-C included; ``path`` then still holds
    its previous content. ``ResultsError`` for an OS error.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(exc, OSError):
            raise ResultsError(f"{path}: cannot write: {exc.strerror or exc}") from exc
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# --------------------------------------------------------------------------------------------
# Reading


def _read_v1(text: str) -> ResultsDocument:
    """Schema 1 is schema 2 without system metrics: its repetitions read with none."""
    data = json.loads(text)
    if isinstance(data, dict):
        repetitions = data.get("repetitions")
        if isinstance(repetitions, list) and any(
            isinstance(r, dict) and "metrics" in r for r in repetitions
        ):
            raise ResultsError("repetitions[].metrics exist only from schema_version 2")
        data["schema_version"] = 2
    return _read_v2(json.dumps(data))


def _read_v2(text: str) -> ResultsDocument:
    data = json.loads(text)
    if _add_later_latency_figures(data):
        text = json.dumps(data)
    return ResultsDocument.model_validate_json(text)


def _add_later_latency_figures(data: Any) -> bool:
    """Give a document the latency figures coord added after writing it; True if it had to.

    Every ``latency_usec`` sits beside the histogram it was read from, so a figure added to
    ``LatencyFields`` later (a new percentile) is computed from that histogram, and the
    summary's from the repetitions'. Anything malformed is left for validation to refuse.
    """
    if not isinstance(data, dict) or not isinstance(data.get("repetitions"), list):
        return False
    try:
        settings = data["histograms"]
        params = HistogramParams(
            settings["lowest_usec"], settings["highest_usec"], settings["significant_figures"]
        )
        added = [_add_missing(part, params) for part in _latency_holders(data["repetitions"])]
        summary = data.get("summary")
        if summary is not None:
            latencies = [Latency.model_validate(r["latency_usec"]) for r in data["repetitions"]]
            added.append(_add_missing_spreads(summary["latency_usec"], latencies))
    # HistogramError and pydantic's ValidationError are ValueErrors
    except (KeyError, TypeError, ValueError, AttributeError):
        return False
    return any(added)


def _add_missing_spreads(summary: dict[str, Any], latencies: list[Latency]) -> bool:
    missing = [name for name in LATENCY_FIGURES if name not in summary]
    if missing:
        computed = LatencySummary.of(latencies).model_dump()
        summary.update({name: computed[name] for name in missing})
    return bool(missing)


def _latency_holders(repetitions: list[Any]) -> list[dict[str, Any]]:
    """The repetitions, their agents and their commands: each a latency_usec and histogram."""
    return [
        part
        for repetition in repetitions
        for part in (repetition, *repetition["agents"], *repetition["commands"].values())
    ]


def _add_missing(part: dict[str, Any], params: HistogramParams) -> bool:
    latency = part["latency_usec"]
    missing = [name for name in LATENCY_FIGURES if name not in latency]
    if missing:
        computed = Latency.of(decode_histogram(part["histogram"], params)).model_dump()
        latency.update({name: computed[name] for name in missing})
    return bool(missing)


READERS: Mapping[int, Callable[[str], ResultsDocument]] = {1: _read_v1, 2: _read_v2}
"""schema_version -> reader turning a document of that version into the current model."""


def load_results(path: str | os.PathLike[str]) -> ResultsDocument:
    """Read ``results.json`` (or the one inside a results directory), any supported version.

    ``ResultsError`` (one line naming the file) if it cannot be read, is not JSON, carries no
    or an unsupported ``schema_version``, or does not match its version's schema.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ResultsError(f"{path}: cannot read: {reason or exc}") from exc
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ResultsError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ResultsError(f"{path}: not a coord results document (no schema_version)")
    version = data["schema_version"]
    known = type(version) is int  # not bool, float or text
    reader = READERS.get(version) if known else None
    if reader is None:
        supported = ", ".join(str(v) for v in sorted(READERS))
        newer = " (written by a newer coord)" if known and version > max(READERS) else ""
        raise ResultsError(
            f"{path}: schema_version {version!r} is not supported{newer}; coord {__version__} "
            f"reads {supported}"
        )
    try:
        return reader(text)
    except ResultsError as exc:
        raise ResultsError(f"{path}: schema_version {version}: {exc}") from exc
    except ValidationError as exc:
        raise ResultsError(
            f"{path}: not a valid results document (schema_version {version}): "
            f"{first_problem(exc)}"
        ) from exc
