"""The one place the agent touches HdrHistogram (the ``hdrhistogram`` package, module ``hdrh``).

Latencies are microseconds. A histogram travels as the standard compressed base64 "V2" form
(``HISTFAAA...``), which every HdrHistogram implementation (Java, C, Go, Rust, Python) reads;
:func:`encode` / :func:`decode` convert, :func:`add` merges (merging is adding counts; a
percentile is only ever read from one merged histogram).

:class:`IntervalRecorder` is what a load worker records into: per command name, the latencies
of the current interval, counted in a plain ``dict`` (microseconds -> count) because
``HdrHistogram.record_value`` costs about a microsecond in pure Python while a dict increment
costs tens of nanoseconds; once per interval the dicts become histograms (one record per
distinct value, not per request: :func:`record_pairs`, a slice at a time, by
:mod:`agent.drivers.kit.recorder`). Values beyond the histogram's range are counted as
``overflow``, never dropped silently.

:func:`percentiles` is the one reading of a percentile for agent and coordinator alike:
HdrHistogram's reference (Java) rank convention, not the ``hdrh`` package's.
"""

from __future__ import annotations

import bisect
import ctypes
import dataclasses
import functools
import itertools
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from hdrh.histogram import HdrHistogram

#: Nanoseconds per microsecond: the unit every histogram here records.
NS_PER_USEC: Final = 1000
#: Added before the integer division so that a latency is rounded to the nearest µs, not floored.
HALF_USEC_NS: Final = NS_PER_USEC // 2


@dataclass(frozen=True)
class HistogramParams:
    """Unit (µs), range and precision of every histogram of a load; fixed by the coordinator."""

    lowest_usec: int = 1
    highest_usec: int = 60_000_000
    significant_figures: int = 3

    def __post_init__(self) -> None:
        for name in _PARAM_NAMES:
            if type(getattr(self, name)) is not int:
                raise ValueError(f"histogram.{name} must be an integer")
        if self.lowest_usec < 1:
            raise ValueError(f"histogram.lowest_usec must be >= 1, got {self.lowest_usec}")
        if self.highest_usec < 2 * self.lowest_usec:
            raise ValueError(
                f"histogram.highest_usec must be >= 2 * lowest_usec, got {self.highest_usec}"
            )
        if not 1 <= self.significant_figures <= 5:
            raise ValueError(
                f"histogram.significant_figures must be 1..5, got {self.significant_figures}"
            )

    @classmethod
    def from_json(cls, fields: Mapping[str, Any]) -> HistogramParams:
        """From ``{"lowest_usec": .., "highest_usec": .., "significant_figures": ..}``;
        ValueError for a missing, unknown or invalid field."""
        extra = sorted(set(fields) - set(_PARAM_NAMES))
        if extra:
            raise ValueError(f"histogram: unknown field(s): {', '.join(extra)}")
        missing = sorted(set(_PARAM_NAMES) - set(fields))
        if missing:
            raise ValueError(f"histogram: missing field(s): {', '.join(missing)}")
        return cls(**{name: fields[name] for name in _PARAM_NAMES})

    def to_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _PARAM_NAMES}

    @classmethod
    def of(cls, histogram: HdrHistogram) -> HistogramParams:
        """The parameters ``histogram`` was made with."""
        return cls(
            int(histogram.lowest_trackable_value),
            int(histogram.highest_trackable_value),
            int(histogram.significant_figures),
        )

    @functools.cached_property
    def sub_bucket_bits(self) -> int:
        """log2 of the histogram's sub-bucket count: 11 (2,048) at 3 significant figures."""
        return math.ceil(math.log2(2 * 10**self.significant_figures))

    @functools.cached_property
    def exact_below(self) -> int:
        """Values below this one have buckets of one unit; above it, a bucket spans
        ``2 ** (value.bit_length() - sub_bucket_bits)`` values (:meth:`bucket_floor`)."""
        return (1 << self.sub_bucket_bits) << (self.lowest_usec.bit_length() - 1)

    def bucket_floor(self, value: int) -> int:
        """The lowest value of ``value``'s bucket (hdrh's ``get_lowest_equivalent_value``) for
        a value at or above :attr:`exact_below`; ``value`` itself below it.

        A load loop counts latencies in a dict keyed by µs before they reach a histogram. An
        overloaded run's latencies, seconds long, would make nearly every key a new one
        (100,000 keys an interval at 100,000 requests/s), and each key costs the loop a
        dict entry and the interval's packing one more pair; the histogram would put them in
        a few thousand buckets anyway. So a latency at or above :attr:`exact_below` is
        counted under its bucket's floor: the histogram is the same, the dict small. The
        loops compare with :attr:`exact_below` before they call this (one compare on the
        common path)."""
        if value < self.exact_below:
            return value
        shift = value.bit_length() - self.sub_bucket_bits
        return value >> shift << shift

    def empty(self) -> HdrHistogram:
        """A new histogram with these parameters and nothing recorded."""
        return HdrHistogram(self.lowest_usec, self.highest_usec, self.significant_figures)

    def describe(self) -> str:
        """E.g. ``1..60000000 µs, 3 significant figures``."""
        return (
            f"{self.lowest_usec}..{self.highest_usec} µs, "
            f"{self.significant_figures} significant figures"
        )


_PARAM_NAMES: Final = tuple(param.name for param in dataclasses.fields(HistogramParams))


def encode(histogram: HdrHistogram) -> str:
    """The standard compressed base64 form (HdrHistogram V2 "histoblob"), as text."""
    blob: bytes = histogram.encode()
    return blob.decode("ascii")


def clear(histogram: HdrHistogram) -> None:
    """Empty ``histogram`` to record into it again. hdrh's ``reset()`` zeroes the counts one by
    one in Python (0.6 ms for 1 µs..60 s at 3 figures, as long as creating a histogram): a load
    process rolls its interval while its connections wait, so its counts are zeroed in one
    ``memset`` here (about 15 µs)."""
    counts = histogram.counts
    if not isinstance(counts, ctypes.Array):  # (another hdrh than the one this was written for)
        histogram.reset()
        return
    ctypes.memset(ctypes.addressof(counts), 0, ctypes.sizeof(counts))
    histogram.total_count = 0
    histogram.min_value = sys.maxsize
    histogram.max_value = 0


def decode(text: str) -> HdrHistogram:
    """A histogram from its compressed base64 form; ValueError if it is not one."""
    try:
        histogram: HdrHistogram = HdrHistogram.decode(text.encode("ascii"))
    except Exception as exc:  # hdrh raises TypeError, zlib.error, its own cookie errors...
        raise ValueError(f"not an encoded HdrHistogram: {exc}") from exc
    return histogram


def add(into: HdrHistogram, other: HdrHistogram) -> None:
    """Add ``other``'s counts to ``into`` (same parameters: counts are added index by index)."""
    if other.get_total_count():
        into.add(other)


def merge_encoded(texts: Iterable[str], params: HistogramParams) -> HdrHistogram:
    """One histogram holding every count of the encoded histograms ``texts``."""
    merged = params.empty()
    for text in texts:
        add(merged, decode(text))
    return merged


def counts_view(histogram: HdrHistogram) -> memoryview:
    """The counts array without copying (hdrh keeps it as a ctypes array of 64-bit words)."""
    return memoryview(histogram.counts).cast("B").cast("Q")[: histogram.counts_len]


def percentile_rank(level: float, total: int) -> int:
    """How many of ``total`` values lie at or below percentile ``level`` (0..100): the rank
    HdrHistogram's Java ``getValueAtPercentile`` seeks, ``max(1, ceil(level / 100 * total))``.

    Exactly Java's arithmetic: the level is first lowered by one ulp (so that a level whose
    share is an integer, as 50 % of 10, is not pushed one rank up by a rounding error) and
    kept within 0..100. The ``hdrh`` package rounds half up instead, one rank (hence up to
    one bucket) lower whenever the share's fraction is below one half.
    """
    requested = min(max(math.nextafter(level, -math.inf), 0.0), 100.0)
    return max(math.ceil(requested * total / 100.0), 1)


def percentiles(histogram: HdrHistogram, levels: Iterable[float]) -> dict[float, int]:
    """Value at each percentile ``level`` (0..100), as HdrHistogram's Java implementation
    reads it; 0 for an empty histogram.

    The value is that of the first bucket whose cumulative count reaches
    :func:`percentile_rank`: its highest equivalent value (its lowest for level 0), as in
    Java's ``getValueAtPercentile``. The cumulative counts are computed once, in C.
    """
    wanted = list(levels)
    total = int(histogram.total_count)
    if not total:
        return dict.fromkeys(wanted, 0)
    cumulative = list(itertools.accumulate(counts_view(histogram)))
    found = {}
    for level in wanted:
        index = bisect.bisect_left(cumulative, percentile_rank(level, total))
        if index >= len(cumulative):
            found[level] = 0
            continue
        value = histogram.get_value_from_index(index)
        if level:
            found[level] = int(histogram.get_highest_equivalent_value(value))
        else:
            found[level] = int(histogram.get_lowest_equivalent_value(value))
    return found


def record_counts(histogram: HdrHistogram, counts: Mapping[int, int]) -> int:
    """Record ``{value: count}`` into ``histogram``; returns the count of values out of range.

    The same as ``record_value(value, count)`` for each item (a unit test holds them equal),
    about five times faster: the counts index is computed inline (``int.bit_length`` for hdrh's
    ``_clz``) and the bookkeeping (total, min, max) is done once. A load process rolls its
    interval with this while its connections wait, so the pause must stay short.
    """
    return record_pairs(histogram, counts.items())


def record_pairs(histogram: HdrHistogram, pairs: Iterable[tuple[int, int]]) -> int:
    """:func:`record_counts` over ``(value, count)`` pairs: a load process records a long
    interval a slice at a time (:mod:`agent.drivers.kit.recorder`)."""
    mask = histogram.sub_bucket_mask
    unit = histogram.unit_magnitude
    half_magnitude = histogram.sub_bucket_half_count_magnitude
    half_count = histogram.sub_bucket_half_count
    length = histogram.counts_len
    cells = histogram.counts
    shift_base = unit + half_magnitude + 1
    overflow = recorded = 0
    lowest = histogram.min_value
    highest = histogram.max_value
    for value, count in pairs:
        if value < 0:
            overflow += count
            continue
        bucket = (value | mask).bit_length() - shift_base
        index = ((bucket + 1) << half_magnitude) + (value >> (bucket + unit)) - half_count
        if index < 0 or index >= length:
            overflow += count
            continue
        cells[index] += count
        recorded += count
        lowest = min(lowest, value)
        highest = max(highest, value)
    if recorded:
        histogram.total_count += recorded
        histogram.min_value = lowest
        histogram.max_value = highest
    return overflow


# --- recording ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandLatencies:
    """One command's latencies over one interval: the encoded histogram, and how many replies
    it stands for (``count`` = the histogram's count + the command's overflow)."""

    histogram: str
    count: int


class IntervalRecorder:
    """Latencies of one worker's current interval, per command name; taken once per interval
    (:class:`agent.drivers.kit.recorder.LoadRecorder`).

    :meth:`record` is the convenient entry point. A hot loop can instead take the live
    counting dict of a command once with :meth:`bucket` (microseconds, rounded to the nearest,
    at least 1 -> count) and add to it directly (its interval is then taken by copying and
    emptying the dicts in place, so they stay valid), or reach the dicts through a
    :meth:`live` list (then :meth:`take` swaps in fresh ones).
    """

    def __init__(self, params: HistogramParams, commands: Iterable[str] = ()) -> None:
        self.params = params
        self._buckets: dict[str, dict[int, int]] = {}
        self._scratch: HdrHistogram | None = None  # made once, cleared after each encoding
        self._live: list[tuple[list[dict[int, int]], list[str]]] = []  # see live()
        for command in commands:
            self.bucket(command)

    def bucket(self, command: str) -> dict[int, int]:
        """The live ``{latency_usec: count}`` dict of ``command`` for the current interval."""
        bucket = self._buckets.get(command)
        if bucket is None:
            bucket = self._buckets[command] = {}
        return bucket

    def live(self, commands: Sequence[str]) -> list[dict[int, int]]:
        """The live dicts of ``commands``, in their order, as a list that :meth:`take` keeps
        current: a hot loop indexes it by command rather than hold each dict."""
        found = [self.bucket(command) for command in commands]
        self._live.append((found, list(commands)))
        return found

    def buckets(self) -> dict[str, dict[int, int]]:
        """Every command's live dict, by command."""
        return self._buckets

    def take(self) -> dict[str, dict[int, int]]:
        """The non-empty dicts of the interval that ended, by command; each command gets a
        fresh one (in every :meth:`live` list too). Swapped, not copied: O(commands)."""
        taken = {}
        for command, bucket in self._buckets.items():
            if bucket:
                taken[command] = bucket
                self._buckets[command] = {}
        if taken:
            for found, commands in self._live:
                found[:] = [self._buckets[command] for command in commands]
        return taken

    def record(self, command: str, latency_ns: int, count: int = 1) -> None:
        """Count ``count`` replies of ``command`` that took ``latency_ns``, rounded to the
        nearest µs (below 1 µs: 1 µs)."""
        usec = max(1, (latency_ns + HALF_USEC_NS) // NS_PER_USEC)
        bucket = self.bucket(command)
        bucket[usec] = bucket.get(usec, 0) + count

    def encoded(self, counts: Mapping[int, int]) -> tuple[str, int]:
        """``{value: count}`` as an encoded histogram of these parameters, and the count of
        values out of its range. One histogram is recorded into and cleared each time: making
        one costs as much as zeroing it in Python (:func:`clear`)."""
        histogram = self.scratch()
        overflow = record_counts(histogram, counts)
        text = encode(histogram)
        clear(histogram)
        return text, overflow

    def scratch(self) -> HdrHistogram:
        """The one empty histogram of these parameters that encodings record into, and
        clear (:func:`clear`) once encoded."""
        if self._scratch is None:
            self._scratch = self.params.empty()
        return self._scratch
