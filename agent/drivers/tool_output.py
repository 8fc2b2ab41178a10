"""What the parsers of external load tools share: their one error, and moving a tool's
histogram into the load's histogram parameters. Pure (no I/O).

An external tool (redis-benchmark, memtier_benchmark) records latencies in its own
HdrHistogram, with its own range and precision; coord merges histograms by adding counts,
which needs one set of parameters (:class:`agent.histograms.HistogramParams`). Values are
re-recorded bucket by bucket (:func:`rerecord`): a value of the tool's histogram lands in the
coord bucket that holds it, so nothing is lost that the tool had kept.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

from agent.histograms import HistogramParams, record_counts


class ToolOutputError(ValueError):
    """A tool's output coord cannot read (truncated, malformed, or not the tool's).

    ``str()`` is one line, ``"TOOL: what is wrong"``; the caller adds the host.
    """

    def __init__(self, tool: str, problem: str) -> None:
        self.tool = tool
        self.problem = " ".join(problem.split())
        super().__init__(f"{tool}: {self.problem}")


def rerecord(source: HdrHistogram, params: HistogramParams) -> tuple[HdrHistogram, int]:
    """``source``'s counts in a new histogram with ``params``, and how many fell out of its
    range (the caller counts those as overflow, never drops them silently).

    Each bucket of ``source`` is recorded at its highest equivalent value: the value the tools
    print, so a percentile read from the result is never below the tool's own.
    """
    counts: dict[int, int] = {}
    for index in range(source.counts_len):
        count = source.get_count_at_index(index)
        if count:
            value = source.get_highest_equivalent_value(source.get_value_from_index(index))
            counts[value] = counts.get(value, 0) + count
    target = params.empty()
    overflow = record_counts(target, counts)
    return target, overflow
