"""``coord data generate``: a use case's synthetic data written to a directory.

fraud: ``transactions.csv`` (a header, then time, V1..V28, amount, customer_id, label per row)
and ``reference.npy`` (customers x 256 float32, row i is customer i's reference data).
image: ``images.npy`` (count x 224 x 224 x 3) and ``image0.raw`` (the first image's bytes, a
ready binary request body). The same seed and sizes write the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from coordinator.core.errors import UsageError
from coordinator.usecases import fraud
from coordinator.usecases import images as image_data

UseCase = Literal["fraud", "image"]
USE_CASES: tuple[UseCase, ...] = ("fraud", "image")


@dataclass(frozen=True)
class Sizes:
    """How much data: transactions and customers (fraud), images and their dtype (image)."""

    rows: int = 10_000
    customers: int = 1_000
    images: int = 8
    dtype: image_data.Dtype = "uint8"


def transactions_csv(data: fraud.FraudData) -> bytes:
    """The transactions as CSV text (floats with 7 significant digits, as float32 holds)."""
    buffer = io.StringIO()
    buffer.write(",".join([*fraud.COLUMNS, "customer_id", "label"]) + "\n")
    for features, customer, label in zip(data.features, data.customers, data.labels,
                                         strict=True):
        values = ",".join(f"{value:.7g}" for value in features.tolist())
        buffer.write(f"{values},{int(customer)},{int(label)}\n")
    return buffer.getvalue().encode()


def npy_bytes(array: npt.NDArray[np.generic]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def generated_files(use_case: UseCase, seed: int, sizes: Sizes) -> dict[str, bytes]:
    """File name -> content of ``use_case``'s data (pure: nothing is written)."""
    if use_case == "fraud":
        data = fraud.transactions(sizes.rows, sizes.customers, seed)
        return {
            "transactions.csv": transactions_csv(data),
            "reference.npy": npy_bytes(fraud.reference_data(sizes.customers, seed)),
        }
    if use_case == "image":
        tensors = image_data.images(sizes.images, seed, sizes.dtype)
        return {"images.npy": npy_bytes(tensors), "image0.raw": tensors[0].tobytes()}
    raise ValueError(f"unknown use case {use_case!r}; choose one of {', '.join(USE_CASES)}")


def write_use_case(use_case: UseCase, out: Path, seed: int, sizes: Sizes) -> list[Path]:
    """Write ``use_case``'s files into ``out`` (created if missing); the paths written. A
    directory or file that cannot be written is a one-line ``UsageError`` naming it."""
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, content in generated_files(use_case, seed, sizes).items():
            path = out / name
            path.write_bytes(content)
            written.append(path)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write {exc.filename or out}: "
                         f"{exc.strerror or exc}") from None
    return written
