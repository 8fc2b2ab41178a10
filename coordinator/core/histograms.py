"""HdrHistograms as the coordinator handles them: decode (checked), encode, merge, read.

Pure: no I/O. **Histograms, never percentiles, are combined**: merging adds counts; every
percentile is read from one merged histogram. **One histogram shape for everyone**: the
coordinator fixes units (µs), range and precision (``HISTOGRAM_PARAMS``); a histogram with
other ones is refused rather than merged approximately.
"""

from __future__ import annotations

import functools
import math
import operator
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from hdrh.codec import (
    HdrCookieException,
    HdrHistogramEncoder,
    HdrHistogramSettingsException,
    HdrLengthException,
)
from hdrh.histogram import HdrHistogram

from agent.histograms import HistogramParams, counts_view

HGRM_TICKS_PER_HALF_DISTANCE = 5
"""Rows of an ``.hgrm`` table per halving of the distance to 100 % (HdrHistogram's default)."""

HGRM_UNIT_RATIO = 1000
"""``.hgrm`` values are milliseconds: µs recorded / 1000 (see ``percentile_distribution``)."""

HISTOGRAM_PARAMS = HistogramParams()
"""What the coordinator asks every agent for: 1 µs .. 60 s, 3 significant figures."""


class HistogramError(ValueError):
    """An encoded histogram cannot be decoded, or has other parameters than expected."""


_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # base64 (binascii.Error), short header, varint stream, bad parameters
    TypeError,
    IndexError,  # counts beyond the array the parameters allow
    RuntimeError,  # empty payload
    ArithmeticError,
    zlib.error,
    HdrCookieException,
    HdrLengthException,
    HdrHistogramSettingsException,
)


def decode_histogram(encoded: str, expected: HistogramParams = HISTOGRAM_PARAMS) -> HdrHistogram:
    """Decode a standard compressed base64 histogram that must have ``expected`` parameters.

    The parameters are read from the payload header and checked before the counts array is
    allocated, so a hostile header cannot make us allocate a huge array.
    """
    try:
        payload = HdrHistogramEncoder.decode(encoded)
    except _DECODE_ERRORS as exc:
        raise HistogramError(f"not a compressed base64 HdrHistogram ({_why(exc)})") from exc
    header = payload.payload
    found = (
        int(header.lowest_trackable_value),
        int(header.highest_trackable_value),
        int(header.significant_figures),
    )
    wanted = (expected.lowest_usec, expected.highest_usec, expected.significant_figures)
    if found != wanted:
        raise HistogramError(
            f"histogram of {found[0]}..{found[1]} µs, {found[2]} significant figures; "
            f"expected {expected.describe()}"
        )
    try:
        return HdrHistogram(*wanted, hdr_payload=payload)
    except _DECODE_ERRORS as exc:
        raise HistogramError(f"corrupt HdrHistogram counts ({_why(exc)})") from exc


def encode_histogram(histogram: HdrHistogram) -> str:
    """The standard compressed base64 form (V2 encoding), as text."""
    encoded: bytes = histogram.encode()
    return encoded.decode("ascii")


def merge(
    histograms: Iterable[HdrHistogram], params: HistogramParams = HISTOGRAM_PARAMS
) -> HdrHistogram:
    """A new histogram holding every count of ``histograms`` (added, never averaged).

    The inputs are left untouched; no input gives an empty histogram with ``params``.
    ``ValueError`` if an input was made with other parameters.
    """
    merged = params.empty()
    for histogram in histograms:
        add_into(merged, histogram)
    return merged


def add_into(target: HdrHistogram, histogram: HdrHistogram) -> None:
    """Add ``histogram``'s counts to ``target`` (same parameters, else ``ValueError``)."""
    theirs, ours = HistogramParams.of(histogram), HistogramParams.of(target)
    if theirs != ours:
        raise ValueError(
            f"cannot merge a histogram of {theirs.describe()} into one of {ours.describe()}"
        )
    lowest = target.min_value
    target.add(histogram)
    # hdrh's add() reads an empty target's minimum as 0; keep the true minimum instead.
    target.min_value = min(lowest, histogram.min_value) if histogram.total_count else lowest


def counts(histogram: HdrHistogram) -> list[int]:
    """The raw counts array (one count per bucket index), for comparisons and tests."""
    return list(counts_view(histogram))


def mean(histogram: HdrHistogram) -> float:
    """HdrHistogram's mean (each bucket counted at its middle value), computed at C speed."""
    total = int(histogram.total_count)
    if not total:
        return 0.0
    middles = _bucket_middles(HistogramParams.of(histogram))
    weighted: int = sum(map(operator.mul, counts_view(histogram), middles))
    return weighted / total


@functools.lru_cache(maxsize=8)
def _bucket_middles(params: HistogramParams) -> tuple[int, ...]:
    """The value hdrh's ``get_mean_value`` gives each bucket index, for these parameters."""
    histogram = params.empty()
    middles = []
    for index in range(histogram.counts_len):
        value = histogram.get_value_from_index(index)
        lowest = int(histogram.get_lowest_equivalent_value(value))
        highest = int(histogram.get_highest_equivalent_value(value))
        middles.append(lowest + ((highest - lowest + 1) >> 1))
    return tuple(middles)


@dataclass(frozen=True)
class PercentileRow:
    """One row of an ``.hgrm`` table: the value reached at a percentile level."""

    value_usec: int
    level: float
    """Percent, 0..100."""
    total_count: int
    """Values at or below ``value_usec``."""


def percentile_rows(
    histogram: HdrHistogram, ticks_per_half_distance: int = HGRM_TICKS_PER_HALF_DISTANCE
) -> list[PercentileRow]:
    """The rows of ``histogram``'s ``.hgrm`` table: HdrHistogram Java's ``PercentileIterator``.

    Levels start at 0 and step by ``100 / (ticks * 2^(⌊log2(100 / (100 - level))⌋ + 1))``, so
    each halving of the distance to 100 % gets ``ticks`` rows; a row shows the top of the first
    bucket whose cumulative share reaches its level, which is the value :func:`percentiles`
    gives that level (but for level 0, where it gives the bottom). The last bucket gets one row
    at the level pending, then one at 100 %. The ``hdrh`` package steps without the floor
    (other levels than Java's); these are Java's, exactly, floating point included.
    """
    total = int(histogram.total_count)
    rows: list[PercentileRow] = []
    level = 0.0
    cumulative = 0
    for value, count in _recorded(histogram):
        cumulative += count
        if cumulative >= total:
            rows.append(PercentileRow(value, level, cumulative))
            rows.append(PercentileRow(value, 100.0, cumulative))
            break
        while 100.0 * cumulative / total >= level:
            rows.append(PercentileRow(value, level, cumulative))
            halvings = int(math.log(100.0 / (100.0 - level)) / math.log(2.0))
            level += 100.0 / (ticks_per_half_distance * int(2.0 ** (halvings + 1)))
    return rows


def percentile_distribution(histogram: HdrHistogram) -> str:
    """The standard ``.hgrm`` text of ``histogram``, values in **milliseconds**.

    Character for character what HdrHistogram's Java ``outputPercentileDistribution(out, 5,
    1000.0)`` writes (a unit test compares them): the :func:`percentile_rows` with µs divided
    by 1000 and printed with as many decimals as significant figures (3: no µs is lost),
    numbers rounded half up as Java's ``Formatter`` does; then mean, standard deviation and max
    in ms, and the total count. Milliseconds are what HdrHistogram's plotter and wrk2/memtier
    ``.hgrm`` files use.
    """
    digits = int(histogram.significant_figures)
    ratio = float(HGRM_UNIT_RATIO)
    lines = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}", ""]
    for row in percentile_rows(histogram):
        columns = (
            f"{_fixed(row.value_usec / ratio, digits, 12)} {_fixed(row.level / 100.0, 12, 2)} "
            f"{row.total_count:10d}"
        )
        if row.level != 100.0:
            columns += f" {_fixed(1 / (1.0 - row.level / 100.0), 2, 14)}"
        lines.append(columns)
    java_mean, stddev = _java_mean_and_stddev(histogram)
    lines += [
        f"#[Mean    = {_fixed(java_mean / ratio, digits, 12)}, "
        f"StdDeviation   = {_fixed(stddev / ratio, digits, 12)}]",
        f"#[Max     = {_fixed(int(histogram.get_max_value()) / ratio, digits, 12)}, "
        f"Total count    = {int(histogram.total_count):12d}]",
        f"#[Buckets = {int(histogram.bucket_count):12d}, "
        f"SubBuckets     = {int(histogram.sub_bucket_count):12d}]",
    ]
    return "\n".join(lines) + "\n"


def _recorded(histogram: HdrHistogram) -> Iterator[tuple[int, int]]:
    """(highest equivalent value, count) of each bucket with a count, in value order."""
    for index, count in enumerate(counts_view(histogram)):
        if count:
            value = histogram.get_value_from_index(index)
            yield int(histogram.get_highest_equivalent_value(value)), count


def _java_mean_and_stddev(histogram: HdrHistogram) -> tuple[float, float]:
    """Java's ``getMean`` and ``getStdDeviation``: bucket middles summed in floating point in
    value order (so the ``.hgrm`` footer rounds as Java's does); 0 for an empty histogram."""
    total = int(histogram.total_count)
    if not total:
        return 0.0, 0.0
    middles = _bucket_middles(HistogramParams.of(histogram))
    recorded = [(float(middles[i]), n) for i, n in enumerate(counts_view(histogram)) if n]
    weighted = 0.0
    for middle, count in recorded:
        weighted += middle * count
    java_mean = weighted * 1.0 / total
    deviations = 0.0
    for middle, count in recorded:
        deviation = middle - java_mean
        deviations += deviation * deviation * count
    return java_mean, math.sqrt(deviations / total)


def _fixed(number: float, decimals: int, width: int) -> str:
    """``number`` as Java's ``%WIDTH.DECIMALSf``: its shortest decimal form, rounded half up."""
    exact = Decimal(repr(number)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    return f"{exact:>{width}f}"


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
