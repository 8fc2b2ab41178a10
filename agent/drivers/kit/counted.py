"""An interval as a load process sends it: latencies as raw ``{µs: count}`` counts, packed;
the agent encodes them into HdrHistograms (:meth:`CountedInterval.encoded`). Pure (no I/O).

Why the agent and not the load process: encoding an interval's histograms costs the load
process a millisecond or more (recording each distinct latency, 0.4 µs, then hdrh's encoding
of the whole counts array and its zlib, 250-575 µs a histogram, measured), and every slice of
it delays the sends and the reads due meanwhile: at 50 % of capacity an open loop sent
hundreds of requests a second late at each interval boundary (bench/bench_open_loop.py).
Packing the same counts is two arrays and a base64, tens of nanoseconds per distinct latency;
the agent, which has no schedule to keep, does the rest when the message arrives.

A packed ``{µs: count}`` (:class:`CountsPacking`) is a type letter, then the base64 of the
latencies and then the counts, each an integer in the machine's byte order (both ends run on
the same host): ``I`` unsigned 32-bit while every value fits, else ``q`` signed 64-bit (a
latency of 72 minutes, or one below 0, which the histogram counts out of range: never refused).
``I`` also packs three times faster than the signed types (CPython converts it without parsing
arguments). A load process packs a slice at a time between its loop's rounds.
"""

from __future__ import annotations

import base64
import binascii
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Final

from agent import messages
from agent.drivers.intervals import IntervalData, OpenLoopData, ScheduleLateness, sum_errors
from agent.histograms import CommandLatencies, IntervalRecorder

#: The array types of packed counts: narrow while every value fits, else wide.
_NARROW: Final = "I"
_WIDE: Final = "q"


class CountsPacking:
    """One ``{µs: count}`` dict packed a slice at a time: :meth:`step` until it returns True,
    then :meth:`text`. The dict must not change meanwhile (a load process packs the dicts of
    an interval that ended, no longer recorded into)."""

    def __init__(self, counts: Mapping[int, int]) -> None:
        self._latencies = iter(counts)
        self._counts = iter(counts.values())  # (the same order as the keys)
        self._packed = (array(_NARROW), array(_NARROW))
        self._text: str | None = None

    def step(self, items: int) -> bool:
        """Pack up to ``items`` more; True once all are (about 13 ns each, the text made)."""
        latencies = list(islice(self._latencies, items))
        counts = list(islice(self._counts, items))
        try:
            self._extend(latencies, counts)
        except OverflowError:
            self._packed = (array(_WIDE, self._packed[0]), array(_WIDE, self._packed[1]))
            self._extend(latencies, counts)
        if len(latencies) < items:
            packed_latencies, packed_counts = self._packed
            self._text = packed_latencies.typecode + base64.b64encode(
                packed_latencies.tobytes() + packed_counts.tobytes()).decode("ascii")
            return True
        return False

    def _extend(self, latencies: list[int], counts: list[int]) -> None:
        """Append both, or neither (``fromlist`` undoes its own list on an overflow)."""
        done = len(self._packed[0])
        self._packed[0].fromlist(latencies)
        try:
            self._packed[1].fromlist(counts)
        except OverflowError:
            del self._packed[0][done:]
            raise

    def text(self) -> str:
        """The packed counts, for a message (once :meth:`step` returned True)."""
        if self._text is None:
            raise RuntimeError("the counts are not all packed yet")
        return self._text


def pack_counts(counts: Mapping[int, int]) -> str:
    """``{µs: count}`` packed at once (:class:`CountsPacking`)."""
    packing = CountsPacking(counts)
    packing.step(len(counts) + 1)
    return packing.text()


def unpack_counts(text: str) -> dict[int, int]:
    """The inverse of :func:`pack_counts`; ``ValueError`` if ``text`` is not one."""
    typecode, encoded = text[:1], text[1:]
    if typecode not in (_NARROW, _WIDE):
        raise ValueError(f"not packed counts: type {typecode!r}")
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"not packed counts: {exc}") from None
    values = array(typecode)
    if len(raw) % (2 * values.itemsize):
        raise ValueError(f"not packed counts: {len(raw)} bytes is not whole pairs")
    values.frombytes(raw)
    half = len(values) // 2
    counts = dict(zip(values[:half], values[half:], strict=True))
    if len(counts) != half:
        raise ValueError("not packed counts: a latency is listed twice")
    if any(count < 0 for count in counts.values()):
        raise ValueError("not packed counts: a negative count")
    return counts


@dataclass(frozen=True)
class CountedInterval:
    """:class:`~agent.drivers.intervals.IntervalData` before encoding: each command's, shard's
    and the open loop's lateness counts packed (:func:`pack_counts`), the rest as it will be
    (``open_loop.lateness`` empty until encoded)."""

    index: int
    phase: str
    complete: bool
    commands: Mapping[str, str] = field(default_factory=dict)
    requests: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0
    gap_usec: int = 0
    open_loop: OpenLoopData | None = None
    lateness: str | None = None
    redirects: Mapping[str, int] = field(default_factory=dict)
    shards: Mapping[str, str] = field(default_factory=dict)
    lateness_waiting: str | None = None  # of ``lateness``, the batches that queued

    def to_json(self) -> dict[str, Any]:
        encoded: dict[str, Any] = messages.encode(self)
        return encoded

    @classmethod
    def from_json(cls, data: object) -> CountedInterval:
        """The inverse of :meth:`to_json`; ``MessageError`` (a ValueError) on malformed data."""
        return messages.decode(cls, data)

    def unpacked(self) -> IntervalCounts:
        """The interval with its counts unpacked (tens of nanoseconds a latency); ``ValueError``
        on malformed counts."""
        return IntervalCounts(
            index=self.index, phase=self.phase, complete=self.complete,
            commands={name: unpack_counts(text) for name, text in self.commands.items()},
            requests=self.requests, errors=self.errors, bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received, gap_usec=self.gap_usec,
            open_loop=self.open_loop,
            lateness=(ScheduleLateness(unpack_counts(self.lateness),
                                       unpack_counts(self.lateness_waiting)
                                       if self.lateness_waiting is not None else {})
                      if self.lateness is not None else None),
            redirects=self.redirects,
            shards={name: unpack_counts(text) for name, text in self.shards.items()},
        )  # fmt: skip

    def encoded(self, encoder: IntervalRecorder) -> IntervalData:
        """The interval with its histograms encoded by ``encoder`` (:func:`merge_counts` of
        one part)."""
        return merge_counts([self.unpacked()], encoder, 1)


@dataclass(frozen=True)
class IntervalCounts:
    """One load process's interval with its latencies as ``{µs: count}`` dicts: as its loop
    takes it at its end (:meth:`~agent.drivers.kit.recorder.LoadRecorder.take`, no longer
    recorded into), and as the agent keeps it once unpacked until it is merged. Merging the
    processes' counts, then encoding once per command (:func:`merge_counts`), costs the agent
    one encoding per merged histogram, not one per process and another to merge them."""

    index: int
    phase: str
    complete: bool
    commands: Mapping[str, Mapping[int, int]]
    requests: int
    errors: Mapping[str, int]
    bytes_sent: int
    bytes_received: int
    gap_usec: int
    open_loop: OpenLoopData | None
    lateness: ScheduleLateness | None  # an open loop's
    redirects: Mapping[str, int]
    shards: Mapping[str, Mapping[int, int]]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def merge_counts(parts: Sequence[IntervalCounts], encoder: IntervalRecorder,
                 expected_parts: int) -> IntervalData:
    """One interval from the same interval of several load processes, as
    :func:`agent.drivers.intervals.merge_intervals` merges encoded ones: counts added, then
    each histogram encoded by ``encoder`` (its parameters; one scratch histogram, so one
    thread at a time); complete only if all ``expected_parts`` reported it complete."""
    if not parts:
        raise ValueError("nothing to merge")
    index = parts[0].index
    if any(part.index != index for part in parts):
        raise ValueError("cannot merge different intervals")
    commands: dict[str, CommandLatencies] = {}
    overflow = 0
    for name, counts in sorted(_added(part.commands for part in parts).items()):
        text, beyond = encoder.encoded(counts)
        commands[name] = CommandLatencies(text, sum(counts.values()))
        overflow += beyond
    shards = {name: CommandLatencies(encoder.encoded(counts)[0], sum(counts.values()))
              for name, counts in sorted(_added(part.shards for part in parts).items())}
    loops = [part.open_loop for part in parts if part.open_loop is not None]
    open_loop = None
    if loops:
        late = _added({"every": part.lateness.every, "waiting": part.lateness.waiting}
                      for part in parts if part.lateness is not None)
        open_loop = OpenLoopData.summed(loops, encoder.encoded(late.get("every", {}))[0],
                                        encoder.encoded(late.get("waiting", {}))[0])
    return IntervalData(
        index=index, phase=parts[0].phase,
        complete=len(parts) == expected_parts and all(part.complete for part in parts),
        commands=commands, requests=sum(part.requests for part in parts),
        errors=sum_errors(part.errors for part in parts),
        bytes_sent=sum(part.bytes_sent for part in parts),
        bytes_received=sum(part.bytes_received for part in parts), overflow=overflow,
        gap_usec=max(part.gap_usec for part in parts), open_loop=open_loop,
        redirects=sum_errors(part.redirects for part in parts), shards=shards,
    )  # fmt: skip


def _added(parts: Iterable[Mapping[str, Mapping[int, int]]]) -> dict[str, dict[int, int]]:
    """``{name: {µs: count}}`` of several processes, added name by name."""
    total: dict[str, dict[int, int]] = {}
    for part in parts:
        for name, counts in part.items():
            into = total.get(name)
            if into is None:
                total[name] = dict(counts)
                continue
            for usec, count in counts.items():
                into[usec] = into.get(usec, 0) + count
    return total
