"""The builtin driver's memory estimate (agent.drivers.memory) and the plan it is made from."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers import worker
from agent.drivers.builtin_params import BuiltinParams, load_shapes
from agent.drivers.memory import (
    PROCESS_BASE_BYTES,
    USABLE_SHARE,
    LoadShape,
    format_bytes,
    load_bytes,
    memory_problem,
    process_bytes,
)
from agent.drivers.resp import POOL_MAX_BYTES, POOL_MIN_REQUESTS, RequestMix

GiB = 1024**3
MiB = 1024**2
SIZES = {"preload_batch": worker.PRELOAD_BATCH, "recv_size": worker.RECV_SIZE}
#: The inventory's defaults (coordinator/inventory/schema.py BuiltinDriver).
DEFAULTS = BuiltinParams(
    processes=None, connections=50, pipeline=1, set_ratio=0.1, keyspace=100_000,
    value_size=32, preload=False,
)  # fmt: skip


def needed(params: BuiltinParams, cores: int = 2) -> int:
    return load_bytes(load_shapes(params, cores), **SIZES)


def test_the_largest_value_size_with_default_settings_needs_tens_of_gigabytes() -> None:
    # Requests this large are not pooled (at most POOL_MAX_BYTES are), but each of the 50
    # connections has a batch in flight carrying a 512 MiB value, and its unsent rest.
    params = dataclasses.replace(DEFAULTS, value_size=512 * MiB)
    total = needed(params)
    assert total > 50 * 512 * MiB
    problem = memory_problem(total, 24 * GiB, 2)
    assert problem is not None
    assert problem.startswith("the load needs about ")
    assert "in 2 load process(es)" in problem
    assert "this host has 24.0 GiB available" in problem
    assert "value_size" in problem


def test_default_settings_fit_in_little_memory() -> None:
    total = needed(DEFAULTS)
    assert 2 * PROCESS_BASE_BYTES < total < 2 * 100 * MiB
    assert memory_problem(total, 1 * GiB, 2) is None


def test_a_load_fits_up_to_the_usable_share_of_available_memory() -> None:
    available = 10 * GiB
    limit = int(available * USABLE_SHARE)
    assert memory_problem(limit, available, 1) is None
    assert memory_problem(limit + 1, available, 1) is not None


def test_preloading_counts_its_batches_on_top_of_the_pool() -> None:
    shape = LoadShape(connections=1, pipeline=1, set_ratio=0.01, keyspace=3000,
                      value_size=1 * MiB, preload_keys=3000)  # fmt: skip
    without = process_bytes(dataclasses.replace(shape, preload_keys=0), **SIZES)
    assert process_bytes(shape, **SIZES) - without > 2.9 * 1000 * MiB
    # Measured (2026-11-28): a peak RSS of 3,175 MiB while this process preloaded, 164 MiB of
    # it a request pool that requests of 1 MiB no longer get (resp.POOL_MAX_BYTES).
    assert process_bytes(shape, **SIZES) >= (3175 - 164) * MiB


def test_each_process_of_the_plan_is_counted() -> None:
    params = dataclasses.replace(DEFAULTS, processes=4, connections=10)
    shapes = load_shapes(params, cores=2)
    assert [shape.connections for shape in shapes] == [3, 3, 2, 2]
    assert needed(params) == sum(process_bytes(shape, **SIZES) for shape in shapes)
    preloading = load_shapes(dataclasses.replace(params, preload=True), cores=2)
    assert sum(shape.preload_keys for shape in preloading) == params.keyspace


shapes = st.builds(
    LoadShape,
    connections=st.integers(1, 1000),
    pipeline=st.integers(1, 1000),
    set_ratio=st.floats(0.0, 1.0),
    keyspace=st.integers(1, 10**7),
    value_size=st.integers(0, 512 * MiB),
    preload_keys=st.integers(0, 10**6),
)


@given(shapes, st.sampled_from(["connections", "value_size", "preload_keys"]))
def test_more_of_anything_never_needs_less(shape: LoadShape, field: str) -> None:
    bigger = dataclasses.replace(shape, **{field: getattr(shape, field) * 2 + 1})
    assert process_bytes(bigger, **SIZES) >= process_bytes(shape, **SIZES)


@settings(max_examples=25, deadline=None)
@given(
    keyspace=st.integers(1, 4000),
    pipeline=st.integers(1, 64),
    set_ratio=st.floats(0.0, 1.0),
    # requests above POOL_MAX_BYTES / POOL_MIN_REQUESTS (4 KiB) are encoded per batch, not
    # pooled: leave room for the key and the RESP framing
    value_size=st.integers(0, POOL_MAX_BYTES // POOL_MIN_REQUESTS - 128),
)
def test_the_estimate_covers_the_request_pool_actually_built(
    keyspace: int, pipeline: int, set_ratio: float, value_size: int
) -> None:
    mix = RequestMix(keyspace=keyspace, set_ratio=set_ratio, value_size=value_size,
                     pipeline=pipeline, seed=1)  # fmt: skip
    assert mix.pooled
    pool = sum(len(batch.payload) for batch in mix._pool)
    shape = LoadShape(connections=1, pipeline=pipeline, set_ratio=set_ratio, keyspace=keyspace,
                      value_size=value_size, preload_keys=0)  # fmt: skip
    assert process_bytes(shape, **SIZES) - PROCESS_BASE_BYTES >= pool


def test_sizes_read_in_binary_units() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(512 * MiB) == "512.0 MiB"
    assert format_bytes(3 * 1024**5) == "3072.0 TiB"
