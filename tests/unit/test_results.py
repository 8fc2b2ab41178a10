"""The results document (results/): models, atomic writing, versioned reading, docs."""

from __future__ import annotations

import json
import os
import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.histograms import HistogramParams, percentiles
from coordinator.core.clock import ClockEstimate
from coordinator.core.errors import CoordError
from coordinator.core.histograms import counts, decode_histogram, merge
from coordinator.core.stats import aggregate, common_window, repetition_figures
from coordinator.inventory.schema import Inventory
from coordinator.results import (
    MARKS,
    READERS,
    SCHEMA_VERSION,
    FailureRecord,
    ForcedOverRecord,
    RanWithRecord,
    Repetition,
    ResultsDocument,
    ResultsError,
    ResultsWriter,
    Window,
    agent_record,
    default_directory,
    load_results,
    new_document,
    redact,
)
from coordinator.results.docs import field_paths, json_schema, main, update_document
from tests.unit.test_stats import command, histogram_of, interval, report

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "results-v1.json"
FIXTURE_V2 = ROOT / "tests" / "fixtures" / "results-v2.json"
CREATED = datetime(2026, 11, 25, 14, 30, tzinfo=timezone.utc)


def inventory() -> Inventory:
    return Inventory.model_validate(
        {
            "name": "lab",
            "hosts": [
                {"name": "server1", "address": "198.18.0.2", "roles": ["server"]},
                {"name": "client1", "address": "198.18.0.3", "roles": ["client"]},
                {"name": "client2", "address": "198.18.0.4", "roles": ["client"]},
            ],
            "servers": [{"name": "redis", "host": "server1", "password": "hunter2"}],
        }
    )


def agents() -> list[Any]:
    clock = ClockEstimate(offset_ns=1_000, uncertainty_ns=50, rtt_ns=100, samples=8)
    return [
        agent_record(host, clock, python="3.11.2", agent_version="0.1.0", bundle_hash="ab12")
        for host in ("client1", "client2")
    ]


def document() -> ResultsDocument:
    return new_document(inventory(), agents(), marks=["fewer-than-3-repetitions"],
                        created=CREATED)


def one_repetition(index: int, base: int = 100) -> Repetition:
    reports = [
        report(host, [
            interval(0, "warmup"),
            interval(1, commands={"GET": command([base, base + 10] * 5), "SET": command([base])}),
            interval(2, commands={"GET": command([base + 20] * 4)}, errors={"WRONGTYPE": 1}),
            interval(3, complete=False),
        ])
        for host in ("client1", "client2")
    ]
    return repetition_figures(
        reports, common_window(reports), index=index,
        started=CREATED + timedelta(seconds=10 * index), start_skew_ns=123_456,
    )


def finished_document(repetitions: int = 2) -> ResultsDocument:
    doc = document()
    for index in range(1, repetitions + 1):
        built = one_repetition(index, base=100 * index)
        doc = doc.with_repetition(built, aggregate([*doc.repetitions, built]))
    return doc


# ---------------------------------------------------------------------------------------------
# The kept fixture (an old-format document must stay readable)


def test_the_v1_fixture_loads_and_is_consistent() -> None:
    doc = load_results(FIXTURE)
    assert doc.schema_version == SCHEMA_VERSION  # read into the current model
    assert all(repetition.metrics == [] for repetition in doc.repetitions)
    assert doc.status == "complete"
    assert doc.inventory["servers"][0]["password"] == "***"  # type: ignore[call-overload,index]
    params = HistogramParams(
        doc.histograms.lowest_usec, doc.histograms.highest_usec,
        doc.histograms.significant_figures,
    )
    assert len(doc.repetitions) == 3
    for repetition in doc.repetitions:
        assert repetition.count == sum(agent.count for agent in repetition.agents)
        assert repetition.count == sum(c.count for c in repetition.commands.values())
        assert repetition.start_skew_usec > 0
        merged = decode_histogram(repetition.histogram, params)
        assert merged.get_total_count() == repetition.count - repetition.overflow
        assert percentiles(merged, [99.0])[99.0] == repetition.latency_usec.p99
        assert repetition.ops_per_sec == repetition.count / repetition.window.seconds
        for agent in repetition.agents:
            in_window = [i for i in agent.intervals if i.in_window]
            assert [i.index for i in in_window] == list(
                range(repetition.window.first or 0, (repetition.window.last or 0) + 1)
            )
            assert agent.count == sum(i.count for i in in_window)
    assert doc.summary is not None
    assert doc.summary.repetitions == 3
    assert doc.summary.ops_per_sec.median == statistics.median(
        r.ops_per_sec for r in doc.repetitions
    )
    assert doc.summary.latency_usec.p99.median == statistics.median(
        r.latency_usec.p99 for r in doc.repetitions
    )


def test_the_fixture_round_trips_without_loss() -> None:
    doc = load_results(FIXTURE_V2)
    # `target`, the stall series, the skew's uncertainty, window_seconds and the open loop's
    # figures came later: a document without them reads them as null.
    expected = {**json.loads(FIXTURE_V2.read_text()), "target": None}
    for repetition in expected["repetitions"]:
        repetition.update(start_skew_uncertainty_usec=None, first_request_spread_usec=None)
        for agent in repetition["agents"]:
            agent.update(gap_usec=None, window_seconds=None, sent_per_sec=None,
                         behind_schedule=None)
            for record in agent["intervals"]:
                record.update(p999_usec=None, max_usec=None, gap_usec=None, sent=None, late=None,
                              lateness_max_usec=None, not_sent=None, behind_schedule=None,
                              late_waiting=None, not_sent_waiting=None, loop_behind=None,
                              redirects=None)
        for host in repetition["metrics"]:
            for sampled in host["intervals"]:
                for process in (*sampled["load_processes"], *sampled["server_processes"]):
                    process.update(busy_poll_percent=None, ports=[], busy_threads=None)
    assert json.loads(doc.model_dump_json()) == expected


def test_a_v1_document_reads_as_the_v2_document_without_metrics() -> None:
    """The v2 fixture is the v1 fixture plus metrics (real sampler output)."""
    v1, v2 = load_results(FIXTURE), load_results(FIXTURE_V2)
    assert v1.model_copy(update={
        "repetitions": [r.with_metrics(w.metrics) for r, w in zip(v1.repetitions, v2.repetitions,
                                                                   strict=True)],
    }) == v2  # fmt: skip


def test_the_v2_fixture_carries_metrics_per_repetition_per_host_per_interval() -> None:
    doc = load_results(FIXTURE_V2)
    for repetition in doc.repetitions:
        by_host = {metrics.host: metrics for metrics in repetition.metrics}
        assert sorted(by_host) == ["client1", "client2", "server1"]
        client, server = by_host["client1"], by_host["server1"]
        assert [i.index for i in client.intervals][:6] == [-1, 0, 1, 2, 3, 4]
        assert client.interval(0) is not None
        hottest = client.intervals[1].hottest_load_process()
        assert hottest is not None
        assert hottest.cpu_percent > 0
        assert server.roles == ["server"]
        assert server.intervals[1].server_processes[0].name == "redis-server"
        assert [info.moment for info in server.redis_info] == ["start", "end"]
        assert server.redis_info[0].sections["server"]["redis_version"]


def test_a_v1_document_with_metrics_is_refused(tmp_path: Path) -> None:
    data = json.loads(FIXTURE_V2.read_text())
    data["schema_version"] = 1
    (tmp_path / "results.json").write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"schema_version 1.*metrics.*schema_version 2"):
        load_results(tmp_path)


def test_a_document_written_before_forced_over_existed_still_reads(tmp_path: Path) -> None:
    data = json.loads(FIXTURE.read_text())
    del data["forced_over"]
    (tmp_path / "results.json").write_text(json.dumps(data))
    assert load_results(tmp_path).forced_over == []


def test_a_forced_run_records_the_holders() -> None:
    record = ForcedOverRecord(host="client1", held_by="held by the coord run of a@b (pid 1) "
                              "since 2026-11-28 21:40:03 UTC")  # fmt: skip
    forced = new_document(inventory(), agents(), marks=["forced-over-run-lock"],
                          forced_over=[record])  # fmt: skip
    assert forced.forced_over == [record]
    assert forced.finish("complete").forced_over == [record]
    assert "forced-over-run-lock" in MARKS


def test_a_directory_is_read_through_its_results_json(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(FIXTURE.read_text())
    assert load_results(tmp_path) == load_results(FIXTURE)


def test_every_schema_version_up_to_the_current_has_a_reader_and_a_fixture() -> None:
    assert SCHEMA_VERSION in READERS
    for version in READERS:
        assert (ROOT / "tests" / "fixtures" / f"results-v{version}.json").is_file()


# ---------------------------------------------------------------------------------------------
# Reading refuses what it cannot read, in one line naming the file


def fixture_with(**changes: Any) -> str:
    data = json.loads(FIXTURE.read_text())
    for key, value in changes.items():
        if value is None and key.startswith("drop_"):
            del data[key.removeprefix("drop_")]
        else:
            data[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "not JSON"),
        pytest.param("[" * 100_000, "not JSON (maximum recursion depth", id="nested-too-deep"),
        ("[1]", "not a coord results document (no schema_version)"),
        (fixture_with(drop_schema_version=None), "no schema_version"),
        (fixture_with(schema_version=99), "schema_version 99 is not supported (written by a "
                                          "newer coord); coord 0.1.0 reads 1, 2"),
        (fixture_with(schema_version=0), "schema_version 0 is not supported; coord"),
        (fixture_with(schema_version="1"), "schema_version '1' is not supported"),
        (fixture_with(schema_version=True), "schema_version True is not supported"),
        (fixture_with(drop_status=None), "not a valid results document (schema_version 1): "
                                         "status: Field required"),
        (fixture_with(status="paused"), "status: Input should be"),
        (fixture_with(extra=1), "extra: Extra inputs are not permitted"),
        (fixture_with(created="2026-11-25T15:30:00+01:00"), "created: Value error, must be in UTC"),
        (
            fixture_with(inventory={"servers": [{"password": "hunter2"}]}),
            "inventory.servers.0.password is not redacted",
        ),
        (fixture_with(repetitions=[]), "a summary needs at least one repetition"),
    ],
)
def test_load_refuses_bad_documents(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(ResultsError) as caught:
        load_results(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert reason in message
    assert "\n" not in message


def test_load_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="cannot read: No such file or directory"):
        load_results(tmp_path / "nothing.json")


def test_results_error_is_a_coord_error() -> None:
    assert issubclass(ResultsError, CoordError)
    assert ResultsError("x").exit_status == 1


# ---------------------------------------------------------------------------------------------
# The document through a run


def test_a_new_document_is_running_with_no_repetition_and_a_redacted_inventory() -> None:
    doc = document()
    assert doc.status == "running"
    assert doc.finished is None
    assert doc.repetitions == [] and doc.summary is None
    assert doc.marks == ["fewer-than-3-repetitions"]
    assert doc.inventory["servers"][0]["password"] == "***"  # type: ignore[call-overload,index]
    assert "hunter2" not in doc.model_dump_json()
    assert doc.histograms.significant_figures == 3 and doc.histograms.unit == "us"
    assert [a.host for a in doc.agents] == ["client1", "client2"]
    assert doc.agents[0].offset_ns == 1_000


def test_repetitions_are_appended_with_a_fresh_summary_then_the_run_finishes() -> None:
    doc = finished_document(2)
    assert [r.index for r in doc.repetitions] == [1, 2]
    assert doc.summary is not None and doc.summary.repetitions == 2
    assert doc.summary.ops_per_sec.cv is not None
    ended = doc.finish("interrupted", marks=["interrupted", "fewer-than-3-repetitions"],
                       finished=CREATED + timedelta(minutes=1))
    assert ended.status == "interrupted"
    assert ended.finished == CREATED + timedelta(minutes=1)
    assert ended.marks == ["fewer-than-3-repetitions", "interrupted"]
    assert doc.status == "running"  # documents are immutable: finish() made a copy


def test_a_repetition_index_cannot_repeat() -> None:
    doc = finished_document(1)
    again = one_repetition(1)
    with pytest.raises(ValidationError, match="repetition indices must increase"):
        doc.with_repetition(again, None)


def test_a_repetition_carries_the_figures() -> None:
    built = one_repetition(1)
    assert built.index == 1
    assert built.start_skew_usec == 123.456
    assert built.window.first == 1 and built.window.last == 2 and built.window.seconds == 2.0
    assert built.count == 2 * (11 + 4)
    assert built.errors == {"WRONGTYPE": 2}
    assert built.latency_usec.p99 == 120  # the largest value in the window
    assert built.hgrm == "rep-1.hgrm"
    agents = [decode_histogram(agent.histogram) for agent in built.agents]
    assert counts(decode_histogram(built.histogram)) == counts(merge(agents))
    assert set(built.commands) == {"GET", "SET"}
    assert [a.host for a in built.agents] == ["client1", "client2"]
    agent = built.agents[0]
    assert [(i.index, i.phase, i.complete, i.in_window) for i in agent.intervals] == [
        (0, "warmup", True, False), (1, "measure", True, True), (2, "measure", True, True),
        (3, "measure", False, False),
    ]
    assert agent.intervals[1].ops_per_sec == 11.0
    assert agent.intervals[2].errors == {"WRONGTYPE": 1}
    in_window = [decode_histogram(i.histogram) for i in agent.intervals if i.in_window]
    assert counts(agents[0]) == counts(merge(in_window))


def test_started_is_stored_in_utc() -> None:
    local = datetime(2026, 11, 25, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    built = repetition_figures([], [], started=local)
    assert built.started == datetime(2026, 11, 25, 14, 0, tzinfo=timezone.utc)
    assert built.model_dump_json().count('"started":"2026-11-25T14:00:00Z"') == 1


def test_window_with_holes_lists_what_was_left_out() -> None:
    window = Window.of([3, 4, 6, 9], 0.5)
    assert (window.first, window.last, window.intervals, window.seconds) == (3, 9, 4, 2.0)
    assert window.excluded == [5, 7, 8]
    assert Window.of([], 1.0).first is None


def test_redact_hides_every_secret_at_any_depth() -> None:
    data: Any = {
        "password": "a",
        "servers": [{"password": "b", "username": "u"}, {"password": None}],
        "auth": {"api_token": "c", "client_secret": "d"},
    }
    assert redact(data) == {
        "password": "***",
        "servers": [{"password": "***", "username": "u"}, {"password": None}],
        "auth": {"api_token": "***", "client_secret": "***"},
    }


def test_default_directory() -> None:
    moment = datetime(2026, 11, 25, 9, 5, 7, tzinfo=timezone.utc)
    assert default_directory("lab", moment) == Path("results/20261125-090507-lab")


# ---------------------------------------------------------------------------------------------
# Writing


def test_writer_creates_the_directory_and_writes_loadable_documents(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "deep" / "run")
    doc = finished_document(2)
    path = writer.write(doc)
    assert path == tmp_path / "deep" / "run" / "results.json"
    assert load_results(path) == doc
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]


def test_writer_writes_hgrm_beside_the_document(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "run")
    path = writer.write_hgrm(2, histogram_of([1_500] * 3))
    assert path.name == "rep-2.hgrm"
    text = path.read_text()
    assert text.splitlines()[0].split() == ["Value", "Percentile", "TotalCount",
                                            "1/(1-Percentile)"]
    assert "1.500" in text  # milliseconds


def test_writer_accepts_an_empty_directory_and_refuses_a_non_empty_one(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    ResultsWriter(tmp_path / "empty")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(ResultsError, match="directory is not empty"):
        ResultsWriter(tmp_path / "used")
    (tmp_path / "file").write_text("")
    with pytest.raises(ResultsError, match="exists and is not a directory"):
        ResultsWriter(tmp_path / "file")


def test_overwrite_removes_only_the_files_the_writer_owns(tmp_path: Path) -> None:
    old = ResultsWriter(tmp_path / "run")
    old.write(document())
    old.write_hgrm(1, histogram_of([5]))
    (tmp_path / "run" / "notes.txt").write_text("mine")
    (tmp_path / "run" / ".results.json.123.abcd.tmp").write_text("left by a crash")
    ResultsWriter(tmp_path / "run", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, OSError])
def test_an_interrupted_write_keeps_the_previous_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interruption: type[BaseException]
) -> None:
    writer = ResultsWriter(tmp_path / "run")
    first = finished_document(1)
    writer.write(first)

    def fail(descriptor: int) -> None:
        raise interruption(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    expected = ResultsError if interruption is OSError else KeyboardInterrupt
    with pytest.raises(expected):
        writer.write(finished_document(2))
    monkeypatch.undo()
    assert load_results(writer.results_path) == first
    assert sorted(p.name for p in writer.directory.iterdir()) == ["results.json"]


def test_a_failed_rename_keeps_the_previous_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = ResultsWriter(tmp_path / "run")
    first = finished_document(1)
    writer.write(first)

    def refuse(self: Path, target: Any) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(ResultsError, match=r"results.json: cannot write: Permission denied"):
        writer.write(finished_document(2))
    monkeypatch.undo()
    assert load_results(writer.results_path) == first
    assert sorted(p.name for p in writer.directory.iterdir()) == ["results.json"]


def test_a_run_interrupted_in_its_second_repetition_keeps_the_first(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path / "run")
    doc = document()
    writer.write(doc)
    with pytest.raises(KeyboardInterrupt):
        for index in (1, 2):
            built = one_repetition(index)
            if index == 2:
                raise KeyboardInterrupt  # Ctrl-C while the second repetition runs
            doc = doc.with_repetition(built, aggregate([*doc.repetitions, built]))
            writer.write(doc)
            writer.write_hgrm(index, decode_histogram(built.histogram))
    kept = load_results(writer.directory)
    assert [r.index for r in kept.repetitions] == [1]
    assert kept.status == "running"
    assert (writer.directory / "rep-1.hgrm").is_file()


# ---------------------------------------------------------------------------------------------
# Schema and documentation


def test_the_json_schema_is_printed_and_describes_the_document(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json.loads(json.dumps(json_schema()))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    fixture = json.loads(FIXTURE.read_text())
    assert set(schema["required"]) <= set(fixture) <= set(schema["properties"])
    assert "µs" in schema["$defs"]["Latency"]["properties"]["p99"]["description"]


def test_every_field_is_documented() -> None:
    text = (ROOT / "docs" / "results.md").read_text()
    hint = "run: python -m coordinator.results.docs --docs docs/results.md"
    assert update_document(text) == text, hint
    assert len(field_paths()) > 50


def test_every_field_has_a_description_with_its_meaning() -> None:
    schema = json_schema()
    for name, definition in [("ResultsDocument", schema), *schema["$defs"].items()]:
        for field, spec in definition.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"


def test_a_failed_run_says_why_and_the_reason_round_trips(tmp_path: Path) -> None:
    failure = FailureRecord(reason="client2: no answer to heartbeat() within 10 s",
                            hosts=["client2"])
    failed = document().finish("failed", failure=failure)
    path = ResultsWriter(tmp_path / "failed").write(failed)
    assert load_results(path).failure == failure
    assert json.loads(path.read_text())["failure"]["hosts"] == ["client2"]


def test_the_failure_field_is_absent_unless_the_run_failed(tmp_path: Path) -> None:
    path = ResultsWriter(tmp_path / "done").write(finished_document(1).finish("complete"))
    assert "failure" not in json.loads(path.read_text())
    with pytest.raises(ValidationError, match="failure reason goes with status failed"):
        document().finish("failed")
    with pytest.raises(ValidationError, match="failure reason goes with status failed"):
        document().finish("complete", failure=FailureRecord(reason="no", hosts=[]))


def test_a_latency_figure_added_since_a_document_was_written_is_read_from_its_histograms(
    tmp_path: Path,
) -> None:
    data = json.loads(FIXTURE.read_text())
    for repetition in data["repetitions"]:
        for part in (repetition, *repetition["agents"], *repetition["commands"].values()):
            del part["latency_usec"]["p95"]  # as if coord had added p95 after writing it
    del data["summary"]["latency_usec"]["p95"]
    (tmp_path / "results.json").write_text(json.dumps(data))
    assert load_results(tmp_path) == load_results(FIXTURE)


def test_a_missing_latency_figure_without_its_histogram_is_refused(tmp_path: Path) -> None:
    data = json.loads(FIXTURE.read_text())
    del data["repetitions"][0]["latency_usec"]["p95"]
    data["repetitions"][0]["histogram"] = "not a histogram"
    (tmp_path / "results.json").write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"repetitions\.0\.latency_usec\.p95: Field required"):
        load_results(tmp_path)


def test_what_each_client_ran_with_is_recorded_on_its_agent_only() -> None:
    doc = load_results(FIXTURE)
    ran = RanWithRecord(driver="builtin", driver_version="coord 0.1.0, hiredis 3.0.0",
                        processes=2, connections=50, pipeline=16,
                        interpreter="CPython 3.11.7 (/usr/bin/python3)")
    client = doc.agents[-1].host
    recorded = doc.with_ran_with({client: ran})
    by_host = {agent.host: agent.ran_with for agent in recorded.agents}
    assert by_host[client] == ran
    assert all(record is None for host, record in by_host.items() if host != client)
    written = json.loads(recorded.model_dump_json())
    assert [("ran_with" in agent) for agent in written["agents"]] == [
        agent.host == client for agent in doc.agents]
    assert ResultsDocument.model_validate_json(json.dumps(written)) == recorded


def test_the_preload_time_of_the_first_repetition_stays_when_later_ones_preload_nothing() -> None:
    doc = load_results(FIXTURE)
    client = doc.agents[-1].host
    ran = RanWithRecord(driver="builtin", driver_version="coord", processes=1, connections=4,
                        pipeline=1, interpreter="CPython", preload_seconds=3.5)
    later = ran.model_copy(update={"preload_seconds": None})
    recorded = doc.with_ran_with({client: ran}).with_ran_with({client: later})
    (kept,) = [agent.ran_with for agent in recorded.agents if agent.host == client]
    assert kept is not None and kept.preload_seconds == 3.5
