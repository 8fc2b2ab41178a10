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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, Final

from agent import messages
from agent.drivers.intervals import IntervalData, OpenLoopData
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

    def to_json(self) -> dict[str, Any]:
        encoded: dict[str, Any] = messages.encode(self)
        return encoded

    @classmethod
    def from_json(cls, data: object) -> CountedInterval:
        """The inverse of :meth:`to_json`; ``MessageError`` (a ValueError) on malformed data."""
        return messages.decode(cls, data)

    def encoded(self, encoder: IntervalRecorder) -> IntervalData:
        """The interval with its histograms encoded by ``encoder`` (its parameters; one
        scratch histogram, so one thread at a time); ``ValueError`` on malformed counts."""
        commands: dict[str, CommandLatencies] = {}
        overflow = 0
        for name, packed in self.commands.items():
            counts = unpack_counts(packed)
            text, beyond = encoder.encoded(counts)
            commands[name] = CommandLatencies(text, sum(counts.values()))
            overflow += beyond
        shards = {}
        for name, packed in self.shards.items():
            counts = unpack_counts(packed)
            shards[name] = CommandLatencies(encoder.encoded(counts)[0], sum(counts.values()))
        open_loop = self.open_loop
        if open_loop is not None and self.lateness is not None:
            open_loop = replace(open_loop, lateness=encoder.encoded(
                unpack_counts(self.lateness))[0])
        return IntervalData(
            index=self.index, phase=self.phase, complete=self.complete, commands=commands,
            requests=self.requests, errors=self.errors, bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received, overflow=overflow, gap_usec=self.gap_usec,
            open_loop=open_loop, redirects=self.redirects, shards=shards,
        )  # fmt: skip
