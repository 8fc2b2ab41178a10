"""coord's percentiles and ``.hgrm`` tables against HdrHistogram's reference (Java) implementation.

Every percentile coord reports (``results.json``, the interval series, the live view) and every
``.hgrm`` row must be what HdrHistogram's Java implementation gives on the very same histogram.
Java answers through ``tests/java/HdrReference.java``, one JVM for the whole module (a JVM
start costs about a second), fed the histograms in their compressed base64 form. Without
``java`` or Debian's ``libhdrhistogram-java`` these tests are skipped, saying which is missing
(``scripts/install-system-packages`` installs both).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.drivers.intervals import IntervalData, p99_usec
from agent.histograms import (
    CommandLatencies,
    HistogramParams,
    IntervalRecorder,
    encode,
    percentiles,
)
from coordinator.core.figures import PERCENTILES, Latency
from coordinator.core.histograms import (
    HGRM_UNIT_RATIO,
    encode_histogram,
    percentile_distribution,
    percentile_rows,
)

HELPER = Path(__file__).resolve().parent.parent / "java" / "HdrReference.java"
JARS = ("/usr/share/java/hdrhistogram.jar", "/usr/share/java/HdrHistogram.jar")
FIXED_LEVELS = (0.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0, *PERCENTILES.values())


class JavaReference:
    """A running ``HdrReference.java``: requests on its stdin, answers on its stdout."""

    def __init__(self, java: str, jar: str) -> None:
        self.process = subprocess.Popen(
            [java, "-cp", jar, str(HELPER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="ascii",
        )

    def _ask(self, request: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, f"the Java helper ended (exit status {self.process.poll()})"
        assert not answer.startswith("ERROR"), answer
        return answer

    def percentiles(self, histogram: HdrHistogram, levels: Sequence[float]) -> dict[float, int]:
        words = " ".join(repr(float(level)) for level in levels)
        answer = self._ask(f"percentiles {encode_histogram(histogram)} {words}")
        return dict(zip(levels, map(int, answer.split()), strict=True))

    def hgrm(self, histogram: HdrHistogram) -> str:
        """Java's ``outputPercentileDistribution(out, 5, HGRM_UNIT_RATIO)``."""
        lines = [self._ask(f"hgrm {encode_histogram(histogram)} {float(HGRM_UNIT_RATIO)}")]
        assert self.process.stdout is not None
        while (line := self.process.stdout.readline()) != "END\n":
            assert line, "the Java helper ended in the middle of a table"
            lines.append(line)
        return "".join(lines)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def java() -> Iterator[JavaReference]:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no `java` on PATH: install default-jre-headless to compare with Java")
    jar = next((jar for jar in JARS if Path(jar).is_file()), None)
    if jar is None:
        pytest.skip(f"HdrHistogram's Java jar is missing ({' or '.join(JARS)}): "
                    "install libhdrhistogram-java")  # fmt: skip
    reference = JavaReference(java, jar)
    yield reference
    reference.close()


@dataclass(frozen=True)
class Case:
    """A histogram as coord makes them: its parameters and ``{value: count}`` recorded."""

    params: HistogramParams
    counts: dict[int, int]

    def histogram(self) -> HdrHistogram:
        histogram = self.params.empty()
        for value, count in self.counts.items():
            assert histogram.record_value(value, count)
        return histogram


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Histograms of coord's shapes: mostly its default (1 µs .. 60 s, 3 figures), some other
    ranges and precisions the inventory allows; few or many distinct values, small or huge
    counts (so that p * total has every kind of fractional part)."""
    figures = draw(st.sampled_from([3, 3, 3, 1, 2, 4, 5]))
    lowest = draw(st.sampled_from([1, 1, 1, 10, 1000]))
    highest = draw(st.sampled_from([60_000_000, 60_000_000, 1_000_000, 100_000, 3_600_000_000]))
    highest = max(highest, 2 * lowest)
    top = draw(st.sampled_from([2_000, 100_000, highest]))
    values = st.integers(lowest, max(lowest, min(top, highest)))
    counts = st.one_of(st.integers(1, 20), st.integers(1, 10**7))
    recorded = draw(st.dictionaries(values, counts, min_size=1, max_size=40))
    return Case(HistogramParams(lowest, highest, figures), recorded)


levels = st.lists(st.floats(0.0, 100.0, allow_nan=False), max_size=20)
#: 40 examples per test, not hypothesis's 100: an example costs 0.1-0.3 s (a wide histogram
#: encoded here, decoded and answered by Java), and the four Java tests took 60 s of the pure
#: suite's 170 s; 160 histograms of every shape against the reference stay.
JAVA_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@given(cases(), levels)
@JAVA_SETTINGS
def test_percentiles_equal_those_of_hdrhistogram_java(
    java: JavaReference, case: Case, random_levels: list[float]
) -> None:
    histogram = case.histogram()
    wanted = [*FIXED_LEVELS, *random_levels]
    assert percentiles(histogram, wanted) == java.percentiles(histogram, wanted)


@given(cases())
@JAVA_SETTINGS
def test_results_figures_equal_those_of_hdrhistogram_java(java: JavaReference, case: Case) -> None:
    histogram = case.histogram()
    latency = Latency.of(histogram)
    reference = java.percentiles(histogram, [*PERCENTILES.values(), 100.0])
    assert {name: getattr(latency, name) for name in PERCENTILES} == {
        name: reference[level] for name, level in PERCENTILES.items()
    }
    assert latency.max == reference[100.0]


@given(cases())
@JAVA_SETTINGS
def test_the_interval_p99_equals_that_of_hdrhistogram_java(java: JavaReference, case: Case) -> None:
    histogram = case.histogram()
    interval = IntervalData(
        index=0,
        phase="measure",
        complete=True,
        commands={"GET": CommandLatencies(encode(histogram), int(histogram.total_count))},
    )
    assert p99_usec(interval, case.params) == java.percentiles(histogram, [99.0])[99.0]


@given(cases())
@JAVA_SETTINGS
def test_hgrm_is_what_hdrhistogram_java_writes(java: JavaReference, case: Case) -> None:
    histogram = case.histogram()
    assert percentile_distribution(histogram) == java.hgrm(histogram)


def test_hgrm_of_an_empty_histogram_is_what_hdrhistogram_java_writes(
    java: JavaReference,
) -> None:
    empty = HistogramParams().empty()
    assert percentile_distribution(empty) == java.hgrm(empty)


def test_a_percentile_that_hdrh_rounds_down_is_read_as_java_does(java: JavaReference) -> None:
    # 1006 replies: p90 is rank ceil(905.4) = 906, the 906th value (hdrh's round-half-up took
    # the 905th). The 905 fast ones are 100 µs, the rest 200 µs.
    histogram = Case(HistogramParams(), {100: 905, 200: 101}).histogram()
    assert java.percentiles(histogram, [90.0]) == {90.0: 200}
    assert percentiles(histogram, [90.0]) == {90.0: 200}


@given(cases())
@settings(max_examples=100, deadline=None)
def test_every_hgrm_row_is_the_percentile_results_json_reports(case: Case) -> None:
    histogram = case.histogram()
    rows = [row for row in percentile_rows(histogram)
            if row.level > 0]  # the first row shows its bucket's top, percentile 0 its bottom
    reported = percentiles(histogram, [row.level for row in rows])
    assert [(row.level, reported[row.level]) for row in rows] == \
        [(row.level, row.value_usec) for row in rows]


@pytest.mark.parametrize(
    ("latency_ns", "recorded_usec"),
    [(1, 1), (499, 1), (1_499, 1), (1_500, 2), (2_499, 2), (39_500, 40), (39_499, 39)],
)
def test_a_latency_is_recorded_to_the_nearest_microsecond(
    latency_ns: int, recorded_usec: int
) -> None:
    recorder = IntervalRecorder(HistogramParams(), ["GET"])
    recorder.record("GET", latency_ns)
    assert recorder.bucket("GET") == {recorded_usec: 1}
