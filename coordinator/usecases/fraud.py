"""Fraud transactions and per-customer reference data, in the shape of aibench's use case.

Pure (no I/O). A transaction is the Kaggle credit-card data set's 30 values in its column
order: ``time`` (seconds from the first transaction, over two days), ``V1``..``V28`` (PCA-like
components: independent normal values whose variance falls with the component's rank, as a PCA
output's does) and ``amount`` (log-normal, like card payments); then a customer id and a label.
About :data:`FRAUD_RATE` of them are frauds (the Kaggle set has 0.17 %): the label marks the
transactions whose hidden linear score is highest, so a model can learn it.

Reference data is :data:`REFERENCE_SIZE` float32 values per customer id, as aibench's
``referenceTensor:{id}``; the fraud model reads a transaction and its customer's reference data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FEATURES = 30
"""time, V1..V28, amount: the transaction tensor of aibench's fraud use case (1 x 30)."""
PCA_COMPONENTS = 28
REFERENCE_SIZE = 256
"""Values of reference data per customer (aibench's reference tensor is 1 x 256)."""
FRAUD_RATE = 0.002
TWO_DAYS = 172_800.0
COLUMNS = ("time", *(f"V{index}" for index in range(1, PCA_COMPONENTS + 1)), "amount")


@dataclass(frozen=True)
class FraudData:
    """``rows`` transactions: features (rows x 30, float32), customer ids and labels (0/1)."""

    features: npt.NDArray[np.float32]
    customers: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int8]


def transactions(rows: int, customers: int, seed: int) -> FraudData:
    """``rows`` transactions of customers ``0 .. customers - 1``; the same seed, the same data."""
    if rows < 1 or customers < 1:
        raise ValueError("rows and customers must be at least 1")
    generator = np.random.default_rng([seed, 1])
    spread = np.sqrt(np.linspace(4.0, 0.1, PCA_COMPONENTS))
    components = generator.standard_normal((rows, PCA_COMPONENTS)) * spread
    time = np.sort(generator.uniform(0.0, TWO_DAYS, rows))
    amount = np.round(generator.lognormal(3.0, 1.2, rows), 2)
    weights = generator.standard_normal(PCA_COMPONENTS)
    score = components @ weights + generator.standard_normal(rows)
    frauds = max(1, round(rows * FRAUD_RATE))
    labels = np.zeros(rows, dtype=np.int8)
    labels[np.argsort(score, kind="stable")[-frauds:]] = 1
    features = np.column_stack([time, components, amount]).astype(np.float32)
    ids = generator.integers(0, customers, rows, dtype=np.int64)
    return FraudData(features=features, customers=ids, labels=labels)


def reference_data(customers: int, seed: int) -> npt.NDArray[np.float32]:
    """customers x :data:`REFERENCE_SIZE` float32 values: row ``i`` is customer ``i``'s."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    generator = np.random.default_rng([seed, 2])
    return generator.standard_normal((customers, REFERENCE_SIZE)).astype(np.float32)


def reference_key(customer: int) -> str:
    """The Redis key of a customer's reference data (a string of 256 little-endian float32)."""
    return f"reference:{customer}"


def reference_blob(values: npt.NDArray[np.float32]) -> bytes:
    """One customer's reference data as stored in Redis: little-endian float32 bytes."""
    return values.astype("<f4").tobytes()


def model_input(features: npt.NDArray[np.float32],
                reference: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The fraud model's input row(s): a transaction's 30 values then its 256 reference values."""
    return np.concatenate([features, reference], axis=-1).astype(np.float32)
