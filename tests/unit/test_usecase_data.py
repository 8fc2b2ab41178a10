"""The use-case data generators: the same seed writes the same bytes, shapes are the use
cases' (aibench's fraud transaction 1x30 with 256 reference values; 224x224x3 images)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.core.errors import UsageError
from coordinator.usecases import fraud, images
from coordinator.usecases.files import Sizes, UseCase, generated_files, write_use_case

SMALL = Sizes(rows=500, customers=20, images=2)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), use_case=st.sampled_from(["fraud", "image"]))
def test_the_same_seed_gives_the_same_bytes(seed: int, use_case: str) -> None:
    case: UseCase = "fraud" if use_case == "fraud" else "image"
    assert generated_files(case, seed, SMALL) == generated_files(case, seed, SMALL)


@pytest.mark.parametrize("use_case", ["fraud", "image"])
def test_another_seed_gives_other_data(use_case: str) -> None:
    case: UseCase = "fraud" if use_case == "fraud" else "image"
    first, second = generated_files(case, 1, SMALL), generated_files(case, 2, SMALL)
    assert all(first[name] != second[name] for name in first)


def test_transactions_have_the_use_case_shape_and_a_rare_label() -> None:
    data = fraud.transactions(10_000, 300, seed=7)
    assert data.features.shape == (10_000, fraud.FEATURES) == (10_000, 30)
    assert data.features.dtype == np.float32
    assert len(fraud.COLUMNS) == 30 and fraud.COLUMNS[0] == "time" and fraud.COLUMNS[-1] == "amount"
    assert np.all(np.diff(data.features[:, 0]) >= 0), "time only moves forward"
    assert np.all(data.features[:, -1] > 0), "amounts are positive"
    assert set(np.unique(data.customers)) <= set(range(300))
    assert 0 < data.labels.sum() / len(data.labels) < 0.01, "frauds are rare"
    spreads = data.features[:, 1:29].std(axis=0)
    assert spreads[0] > spreads[-1] * 3, "PCA-like: variance falls with the component's rank"


def test_reference_data_is_one_row_of_256_float32_per_customer() -> None:
    reference = fraud.reference_data(50, seed=3)
    assert reference.shape == (50, fraud.REFERENCE_SIZE) == (50, 256)
    blob = fraud.reference_blob(reference[4])
    assert len(blob) == 1024
    assert np.array_equal(np.frombuffer(blob, dtype="<f4"), reference[4])
    assert fraud.reference_key(4) == "reference:4"
    row = fraud.model_input(fraud.transactions(1, 50, 3).features[0], reference[4])
    assert row.shape == (286,)


@pytest.mark.parametrize(("dtype", "itemsize"), [("uint8", 1), ("float32", 4)])
def test_images_are_224_by_224_by_3(dtype: images.Dtype, itemsize: int) -> None:
    tensors = images.images(3, seed=5, dtype=dtype)
    assert tensors.shape == (3, 224, 224, 3)
    assert tensors.dtype == np.dtype(dtype) and tensors.itemsize == itemsize
    if dtype == "float32":
        assert tensors.min() >= 0.0 and tensors.max() <= 1.0


def test_written_files_read_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths = write_use_case("fraud", tmp_path, 11, SMALL)
    assert sorted(p.name for p in paths) == ["reference.npy", "transactions.csv"]
    lines = (tmp_path / "transactions.csv").read_text().splitlines()
    assert len(lines) == 1 + SMALL.rows and lines[0].split(",")[-2:] == ["customer_id", "label"]
    assert all(len(line.split(",")) == 32 for line in lines)
    reference = np.load(io.BytesIO((tmp_path / "reference.npy").read_bytes()))
    assert reference.shape == (SMALL.customers, 256)
    write_use_case("image", tmp_path, 11, SMALL)
    assert np.load(tmp_path / "images.npy").shape == (2, 224, 224, 3)
    assert len((tmp_path / "image0.raw").read_bytes()) == 224 * 224 * 3


def test_an_unknown_dtype_or_use_case_is_refused() -> None:
    with pytest.raises(ValueError, match="dtype"):
        images.images(1, 1, "int16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="use case"):
        generated_files("audio", 1, SMALL)  # type: ignore[arg-type]


def test_an_out_directory_that_cannot_be_made_is_one_line_naming_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(UsageError) as raised:
        write_use_case("fraud", blocker / "data", 11, SMALL)
    assert str(raised.value).startswith(f"--out {blocker / 'data'}: cannot write ")
    assert "\n" not in str(raised.value)
