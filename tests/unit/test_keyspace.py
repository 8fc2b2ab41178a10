"""Keyspace distributions (agent.drivers.keyspace): each one's shape within statistical bounds.

Bounds are 5 standard deviations of the count's binomial law (or of a mean): a correct sampler
fails one of them about once in 3.5 million checks; a wrong shape fails them by far."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.drivers.keyspace import Distribution, Keyspace, ZipfSampler, hot_key_count

DRAWS = 40_000


def draws(keyspace: Keyspace, seed: int, count: int = DRAWS, start: int = 0) -> list[int]:
    pick = keyspace.picker(random.Random(seed).random, start=start)  # noqa: S311 (a load)
    return [pick() for _ in range(count)]


def within(observed: int, probability: float, count: int) -> bool:
    """``observed`` of ``count`` draws is within 5 sigma of the binomial expectation."""
    sigma = math.sqrt(count * probability * (1 - probability))
    return abs(observed - count * probability) <= 5 * sigma + 1


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 10**10), st.integers(0, 2**32))
def test_uniform_keys_fill_the_keyspace_evenly(size: int, seed: int) -> None:
    keys = draws(Keyspace(size), seed)
    assert all(0 <= key < size for key in keys)
    below_half = sum(1 for key in keys if key < size // 2)
    assert within(below_half, (size // 2) / size, DRAWS)


def test_sequential_keys_walk_in_order_from_the_start_and_wrap() -> None:
    keys = draws(Keyspace(7, distribution=Distribution("sequential")), 1, 16, start=5)
    assert keys == [5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6]


def zipf_pmf(size: int, s: float) -> Callable[[int], float]:
    norm = math.fsum(1.0 / (k**s) for k in range(1, size + 1))
    return lambda key: 1.0 / ((key + 1) ** s) / norm


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 20_000), st.floats(0.2, 3.0), st.integers(0, 2**32))
def test_zipf_follows_its_law_on_the_hottest_keys_and_the_tail(
    size: int, s: float, seed: int
) -> None:
    keys = draws(Keyspace(size, distribution=Distribution("zipf", s=s)), seed)
    assert all(0 <= key < size for key in keys)
    counts = Counter(keys)
    pmf = zipf_pmf(size, s)
    for key in (0, 1, 2, size - 1):
        if key < size:
            assert within(counts[key], pmf(key), DRAWS), (key, counts[key], pmf(key) * DRAWS)
    upper_half = sum(count for key, count in counts.items() if key >= size // 2)
    assert within(upper_half, math.fsum(pmf(k) for k in range(size // 2, size)), DRAWS)


def test_zipf_over_ten_million_keys_needs_no_table_and_keeps_its_head() -> None:
    size = 10_000_000
    sampler = ZipfSampler(size, 0.99, random.Random(3).random)  # noqa: S311 (a load)
    keys = [sampler.sample() for _ in range(DRAWS)]
    norm = math.fsum(1.0 / k**0.99 for k in range(1, 1001)) + (  # the tail by its integral
        (size + 0.5) ** 0.01 - 1000.5**0.01) / 0.01  # fmt: skip
    assert within(keys.count(0), 1 / norm, DRAWS)
    assert max(keys) > size // 10  # the tail is reached


@settings(max_examples=15, deadline=None)
# at least 200 keys per sd: with fewer, whole keys at the window's edges (up to half a key on
# each side) move the share inside one sd by more than the 5-sigma tolerance (size 1000, sd
# 0.015625 did: 31 keys inside, 1.2 % too many)
@given(st.integers(20_000, 10**9), st.floats(0.35, 0.65), st.floats(0.01, 0.06),
       st.integers(0, 2**32))  # fmt: skip
def test_gaussian_keys_have_the_asked_mean_and_spread(
    size: int, mean: float, sd: float, seed: int
) -> None:
    keys = draws(Keyspace(size, distribution=Distribution("gaussian", mean=mean, sd=sd)), seed)
    assert all(0 <= key < size for key in keys)
    centre, spread = mean * size, sd * size
    average = math.fsum(keys) / DRAWS
    assert abs(average - centre) <= 5 * spread / math.sqrt(DRAWS) + 1
    inside = sum(1 for key in keys if abs(key + 0.5 - centre) <= spread)
    assert within(inside, 0.6827, DRAWS)  # one sd either side (the edges are 5.8 sd away)


def test_gaussian_at_the_edge_is_truncated_to_the_keyspace() -> None:
    keys = draws(Keyspace(1000, distribution=Distribution("gaussian", mean=0.0, sd=0.1)), 4)
    assert min(keys) == 0 and max(keys) < 1000
    assert within(sum(1 for key in keys if key < 100), 0.6827, DRAWS)  # half a normal law


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 10**9), st.floats(0.0, 1.0), st.floats(0.001, 0.999),
       st.integers(0, 2**32))  # fmt: skip
def test_hotset_sends_its_share_of_requests_to_its_share_of_keys(
    size: int, hot_requests: float, hot_keys: float, seed: int
) -> None:
    distribution = Distribution("hotset", hot_requests=hot_requests, hot_keys=hot_keys)
    keys = draws(Keyspace(size, distribution=distribution), seed)
    hot = hot_key_count(size, hot_keys)
    assert all(0 <= key < size for key in keys)
    share = hot_requests if hot < size else 1.0
    assert within(sum(1 for key in keys if key < hot), share, DRAWS)


def test_hotset_of_90_to_10_percent() -> None:
    distribution = Distribution("hotset", hot_requests=0.9, hot_keys=0.1)
    keys = draws(Keyspace(1000, distribution=distribution), 9)
    hot = Counter(key for key in keys if key < 100)
    assert within(sum(hot.values()), 0.9, DRAWS)
    assert len(hot) == 100  # every hot key is used
    assert within(hot[0], 0.9 / 100, DRAWS)


def test_keys_are_named_by_prefix_and_number() -> None:
    assert Keyspace(10).name(3) == b"key:3"
    assert Keyspace(10, "user:{a}:").name(0) == b"user:{a}:0"


@pytest.mark.parametrize(
    ("distribution", "message"),
    [
        (Distribution("zipfian"), "distribution.kind: 'zipfian' is not one of uniform"),
        (Distribution("zipf"), "distribution.s: required with kind zipf"),
        (Distribution("zipf", s=0.0), "distribution.s: must be above 0"),
        (Distribution("uniform", s=1.0), "distribution.s: not a parameter of kind uniform"),
        (Distribution("gaussian", mean=0.5), "distribution.sd: required with kind gaussian"),
        (Distribution("gaussian", mean=1.5, sd=0.1), "distribution.mean: a fraction"),
        (Distribution("hotset", hot_requests=2.0, hot_keys=0.1), "distribution.hot_requests"),
        (Distribution("hotset", hot_requests=0.5, hot_keys=0.0), "distribution.hot_keys"),
    ],
)
def test_an_impossible_distribution_is_refused_naming_its_field(
    distribution: Distribution, message: str
) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        Keyspace(100, distribution=distribution)
