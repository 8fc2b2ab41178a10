"""The platform record (coordinator/core/platform.py): facts as coord describe shows them,
the differences between two platforms, and results.json keeping it (old documents still read)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from agent.messages import HostPlatform
from agent.platform import describe_host
from coordinator.core.platform import (
    PlatformRecord,
    ServerPlatformRecord,
    diff_platforms,
    host_facts,
    host_record,
    server_facts,
)
from coordinator.results import load_results
from coordinator.results.model import ResultsDocument

FIXTURES = Path(__file__).parents[1] / "fixtures"


@functools.cache
def _unreadable_host() -> HostPlatform:
    """A host whose every file is missing: unknowns (the tools are this machine's)."""
    return describe_host(FIXTURES / "nowhere")


def platform(quota: float | None = 0.5, *, hosts: tuple[str, ...] = ("client1", "server"),
             save: str = "") -> PlatformRecord:
    message = _unreadable_host()
    records = [host_record(name, message).model_copy(
        update={"cpu_quota_cores": quota if name.startswith("client") else None,
                "cpu_cgroup": f"v1 /lab/{name}", "hostname": "machine",
                "unknown": {key: why for key, why in message.unknown.items()
                            if key != "cpu_quota_cores"}})
        for name in hosts]
    server = ServerPlatformRecord(
        server="redis", described_by="client1", endpoint="198.18.0.10:6379",
        info={"redis_version": "7.0.15"}, config={"save": save, "hz": "10"},
        unknown={"config.io-threads": "CONFIG GET refused: ERR unknown command"})
    return PlatformRecord(hosts=records, servers=[server])


def test_facts_show_unknowns_with_their_reasons_and_none_as_none() -> None:
    facts = host_facts(platform().hosts[1])
    assert facts["CPU"].startswith("unknown: No such file or directory")
    assert facts["CPU quota"] == "none (v1 /lab/server)"
    assert host_facts(platform().hosts[0])["CPU quota"] == "0.5 cores (v1 /lab/client1)"
    server = server_facts(platform().servers[0])
    assert server["config save"] == '""'
    assert server["config io-threads"] == "unknown: CONFIG GET refused: ERR unknown command"
    assert server["INFO redis_version"] == "7.0.15"


def test_the_same_platform_does_not_differ() -> None:
    assert diff_platforms(platform(), platform()) == []


def test_a_different_quota_is_the_one_difference() -> None:
    differences = diff_platforms(platform(0.5), platform(0.3))
    assert [(d.subject, d.fact, d.before, d.after) for d in differences] == [
        ("host client1", "CPU quota", "0.5 cores (v1 /lab/client1)",
         "0.3 cores (v1 /lab/client1)")]


@given(st.floats(0.01, 64), st.floats(0.01, 64))
def test_quotas_differ_exactly_when_they_are_shown_differently(a: float, b: float) -> None:
    differences = diff_platforms(platform(a), platform(b))
    assert len(differences) == (0 if f"{a:g}" == f"{b:g}" else 1)


def test_a_host_in_one_platform_only_and_a_changed_setting() -> None:
    differences = diff_platforms(platform(hosts=("client1", "server")),
                                 platform(hosts=("client1", "client2", "server"), save="3600 1"))
    assert [(d.subject, d.fact, d.before, d.after) for d in differences] == [
        ("server redis", "config save", '""', "3600 1"),
        ("host client2", "(described)", None, "yes"),
    ]


def test_a_fact_added_later_is_not_recorded_in_older_results_not_none() -> None:
    """A run described before coord recorded how idle CPUs sleep has neither the facts nor
    a reason: "not recorded", and against a newer run it is a difference, not a "none"."""
    described = platform()
    older = described.model_copy(update={"hosts": [record.model_copy(update={"unknown": {
        key: why for key, why in record.unknown.items()
        if key not in ("cpu_idle", "halt_poll_ns")}}) for record in described.hosts]})
    newer = older.model_copy(update={"hosts": [record.model_copy(update={
        "cpu_idle": "haltpoll, governor haltpoll: POLL, haltpoll idle", "halt_poll_ns": 0})
        for record in older.hosts]})
    facts = host_facts(older.hosts[0])
    assert (facts["CPU idle"], facts["halt polling"]) == ("not recorded", "not recorded")
    assert host_facts(newer.hosts[0])["halt polling"] == "0 ns"
    assert [(d.fact, d.before, d.after) for d in diff_platforms(older, newer)][:2] == [
        ("CPU idle", "not recorded", "haltpoll, governor haltpoll: POLL, haltpoll idle"),
        ("halt polling", "not recorded", "0 ns")]
    unreadable = host_facts(platform().hosts[0])  # read, and failed: the reason is shown
    assert unreadable["CPU idle"].startswith("unknown: No such file or directory")


def test_results_keep_the_platform_and_older_documents_read_without_it(tmp_path: Path) -> None:
    old = load_results(FIXTURES / "results-v1.json")
    assert old.platform is None
    assert "platform" not in json.loads(old.model_dump_json())
    kept = old.with_platform(platform())
    path = tmp_path / "results.json"
    path.write_text(kept.model_dump_json())
    assert ResultsDocument.model_validate_json(path.read_text()) == kept
    assert load_results(path).platform == platform()
