"""HdrHistograms as the coordinator handles them: decode (checked), encode, merge, read.

Pure: no I/O. **Histograms, never percentiles, are combined**: merging adds counts; every
percentile is read from one merged histogram. **One histogram shape for everyone**: the
coordinator fixes units (µs), range and precision (``HISTOGRAM_PARAMS``); a histogram with
other ones is refused rather than merged approximately.
"""

from __future__ import annotations

import bisect
import functools
import io
import itertools
import operator
import zlib
from collections.abc import Iterable

from hdrh.codec import (
    HdrCookieException,
    HdrHistogramEncoder,
    HdrHistogramSettingsException,
    HdrLengthException,
)
from hdrh.histogram import HdrHistogram

from agent.histograms import HistogramParams

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
    return list(_counts_view(histogram))


def _counts_view(histogram: HdrHistogram) -> memoryview:
    """The counts array without copying (hdrh keeps it as a ctypes array of 64-bit words)."""
    return memoryview(histogram.counts).cast("B").cast("Q")[: histogram.counts_len]


def percentiles(histogram: HdrHistogram, levels: Iterable[float]) -> dict[float, int]:
    """Value (µs) at each percentile level (0..100); 0 for an empty histogram.

    Exactly hdrh's ``get_value_at_percentile`` (the first bucket whose cumulative count
    reaches the level's share of the total, rounded half up; its highest equivalent value, or
    its lowest for level 0), with the cumulative counts computed once, in C.
    """
    wanted = list(levels)
    total = int(histogram.total_count)
    if not total:
        return dict.fromkeys(wanted, 0)
    cumulative = list(itertools.accumulate(_counts_view(histogram)))
    found = {}
    for level in wanted:
        target = max(int(min(level, 100.0) * total / 100 + 0.5), 1)
        index = bisect.bisect_left(cumulative, target)
        if index >= len(cumulative):
            found[level] = 0
            continue
        value = histogram.get_value_from_index(index)
        if level:
            found[level] = int(histogram.get_highest_equivalent_value(value))
        else:
            found[level] = int(histogram.get_lowest_equivalent_value(value))
    return found


def mean(histogram: HdrHistogram) -> float:
    """HdrHistogram's mean (each bucket counted at its middle value), computed at C speed."""
    total = int(histogram.total_count)
    if not total:
        return 0.0
    middles = _bucket_middles(HistogramParams.of(histogram))
    weighted: int = sum(map(operator.mul, _counts_view(histogram), middles))
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


def percentile_distribution(histogram: HdrHistogram) -> str:
    """The standard ``.hgrm`` text of ``histogram``, values in **milliseconds**.

    The table is HdrHistogram's ``outputPercentileDistribution`` (header ``Value Percentile
    TotalCount 1/(1-Percentile)``, 5 ticks per half distance) with µs divided by 1000 and
    printed with 3 decimals, so no µs is lost; milliseconds are what HdrHistogram's plotter
    and wrk2/memtier ``.hgrm`` files use. The footer gives mean, standard deviation and max in
    ms (hdrh prints the standard deviation unscaled; it is scaled here) and the total count.
    """
    out = io.BytesIO()
    histogram.output_percentile_distribution(out, HGRM_UNIT_RATIO)
    lines = out.getvalue().decode("ascii").splitlines()
    digits = int(histogram.significant_figures)
    stddev = float(histogram.get_stddev()) / HGRM_UNIT_RATIO if histogram.total_count else 0.0
    footer = (
        f"#[Mean    = {mean(histogram) / HGRM_UNIT_RATIO:12.{digits}f}, "
        f"StdDeviation   = {stddev:12.{digits}f}]"
    )
    lines = [footer if line.startswith("#[Mean") else line for line in lines]
    return "\n".join(lines) + "\n"


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
