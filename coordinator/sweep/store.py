"""The sweep directory on disk: ``index.json`` written atomically (an interrupted sweep keeps
a whole index), read back for a resumed sweep, and each cell's results directory."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from pydantic import ValidationError

from coordinator.results import ResultsDocument, load_results
from coordinator.results.io import ResultsError
from coordinator.sweep.index import INDEX_FILE, CellRecord, SweepIndex


def index_path(directory: Path) -> Path:
    return directory / INDEX_FILE


def cell_directory(directory: Path, record: CellRecord) -> Path:
    """Where a cell's ``results.json`` goes: ``<sweep>/<inventory>/<parameters>/``."""
    return directory / record.key


def write_index(directory: Path, index: SweepIndex) -> None:
    """Replace ``index.json`` atomically (temporary file, fsync, rename)."""
    path = index_path(directory)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as stream:
            stream.write(index.model_dump_json(indent=2) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(path)
    except OSError as exc:
        raise ResultsError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def read_index(directory: Path) -> SweepIndex | None:
    """The sweep's index, None when the directory holds none yet; ``ResultsError`` (one line)
    when it cannot be read."""
    path = index_path(directory)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read: {exc}") from exc
    try:
        return SweepIndex.model_validate_json(text)
    except ValidationError as exc:
        raise ResultsError(f"{path}: not a coord sweep index: "
                           f"{exc.errors()[0]['msg']}") from None


def finished_results(directory: Path, record: CellRecord) -> ResultsDocument | None:
    """The cell's ``results.json`` when it says the run completed, else None."""
    try:
        document = load_results(cell_directory(directory, record))
    except ResultsError:
        return None
    return document if document.status == "complete" else None
