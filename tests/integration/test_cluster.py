"""The builtin driver on a real Redis Cluster: ``coord lab up --cluster 3`` (three primaries on
the server host), slots discovered, every request sent to its key's primary, and ``MOVED``
followed after a slot is migrated during the run.

Needs root. One lab (``cls`` on 198.18.223.0/24) for the module, always torn down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from agent.drivers.builtin import BuiltinDriver
from agent.drivers.cluster_slots import key_slot
from agent.drivers.intervals import LoadReport
from agent.drivers.spec import parse_spec
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.lab.plan import LabPaths
from coordinator.results import load_results
from tests.helpers import module_lab, poll_until

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
SPEC = LabSpec(name="cls", clients=1, subnet="198.18.223.0/24", cluster=3)
PATHS = LabPaths.of(SPEC.name, SPEC.state_root)
SERVER = "198.18.223.10"
PORTS = (7000, 7001, 7002)
DEADLINE = 30.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(SPEC, tmp_path_factory.mktemp("cluster-lab"))


def password() -> str:
    return PATHS.redis_password.read_text().strip()


@pytest.fixture
def nodes(lab: LabStatus) -> Iterator[dict[int, redis.Redis]]:
    """A client of each primary, each emptied before and after."""
    clients = {port: redis.Redis(host=SERVER, port=port, password=password(),
                                 socket_timeout=10) for port in PORTS}
    for client in clients.values():
        client.flushall()
    yield clients
    for client in clients.values():
        client.flushall()
        client.close()


def test_slots_are_those_of_cluster_keyslot(nodes: dict[int, redis.Redis]) -> None:
    keys = [b"key:0", b"key:99999", b"somekey", b"{user1000}.following", b"a{}b", b"{{x}}",
            "ключ".encode(), bytes(range(1, 40))]
    assert [key_slot(key) for key in keys] == [
        nodes[7000].execute_command("CLUSTER", "KEYSLOT", key) for key in keys]


def test_a_run_sends_every_request_to_its_keys_primary(
    nodes: dict[int, redis.Redis], lab: LabStatus, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "run", "-i", str(lab.inventory_path),
         "--out", str(out), "--repetitions", "1", "--warmup", "1s", "--duration", "2s",
         "--no-baseline", "--set", "benchmark.builtin.connections=6",
         "--set", "benchmark.builtin.processes=2", "--set", "benchmark.builtin.pipeline=8",
         "--set", "benchmark.builtin.set_ratio=1.0", "--set", "benchmark.builtin.keyspace=3000"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    repetition = load_results(out / "results.json").repetitions[0]
    assert repetition.count > 0
    assert repetition.errors == {}  # no MOVED: every request went to its slot's primary
    sizes = [client.dbsize() for client in nodes.values()]
    assert all(size > 0 for size in sizes)


def migrate(nodes: dict[int, redis.Redis], slot: int) -> tuple[int, int]:
    """Move ``slot`` from its primary to the next one, the way redis-cli --cluster reshard
    does: IMPORTING, MIGRATING, MIGRATE of its keys, SETSLOT NODE. (source port, target port)"""
    ids = {port: client.execute_command("CLUSTER", "MYID").decode()
           for port, client in nodes.items()}
    ranges = nodes[PORTS[0]].execute_command("CLUSTER", "SLOTS")
    source = next(int(entry[2][1]) for entry in ranges if entry[0] <= slot <= entry[1])
    target = PORTS[(PORTS.index(source) + 1) % len(PORTS)]
    nodes[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    nodes[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    while keys := nodes[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        nodes[source].execute_command("MIGRATE", SERVER, target, "", 0, 5000,
                                      "AUTH", password(), "KEYS", *keys)
    for port in (target, source, *(p for p in PORTS if p not in (source, target))):
        nodes[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    return source, target


def commandstats(client: redis.Redis) -> dict[str, dict[str, int]]:
    """``INFO commandstats`` of one node: per command (``set``, ``asking``...) its counters."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): {key: int(value) for key, value in fields.items()
                                            if key in ("calls", "rejected_calls")}
            for name, fields in stats.items()}


def run_migrating(
    nodes: dict[int, redis.Redis], slot: int, params: dict[str, object]
) -> tuple[LoadReport, int]:
    """A 2 s run of the builtin driver against the cluster (``params`` over 1 process, 3
    connections, pipeline 4, 50 keys), ``slot`` migrated once the first interval began:
    (the report, the slot's new primary). Each node's stats are reset after the preload."""
    spec = json.dumps({
        "format": 2, "driver": "builtin",
        "target": {"address": SERVER, "port": 7000, "password": password(), "username": None,
                   "tls": None, "cluster": True},
        "timeline": {"interval_ns": 500_000_000, "warmup_intervals": 0, "measure_intervals": 4},
        "histogram": {"lowest_usec": 1, "highest_usec": 60_000_000, "significant_figures": 3},
        "params": {"processes": 1, "connections": 3, "pipeline": 4, "set_ratio": 0.5,
                   "keyspace": 50, "value_size": 8, "rate": None, "preload": True, **params},
    })
    driver = BuiltinDriver()
    try:
        parsed = parse_spec(spec)
        driver.prepare(parsed)
        for client in nodes.values():
            client.config_resetstat()  # the preload's SETs are not the run's
        driver.start_at(time.time_ns() + 300_000_000)

        def in_interval(index: int) -> bool:
            progress = driver.progress()
            return progress.interval is not None and progress.interval >= index

        poll_until(lambda: in_interval(0), DEADLINE, "the first interval")
        _source, target = migrate(nodes, slot)
        poll_until(lambda: driver.state.done, parsed.timeline.total_s + DEADLINE, "the end")
        return driver.report(), target
    finally:
        driver.close()


def redirects_of(report: LoadReport) -> dict[str, int]:
    """The report's redirections by kind, summed over its intervals."""
    redirects: dict[str, int] = {}
    for interval in report.intervals:
        for kind, count in interval.redirects.items():
            redirects[kind] = redirects.get(kind, 0) + count
    return redirects


def test_redirected_requests_are_sent_again_and_none_is_lost(
    nodes: dict[int, redis.Redis],
) -> None:
    """A slot migrates mid-run: its requests are redirected (MOVED, maybe ASK), sent again and
    answered; Redis counts exactly coord's replies (per shard too) and rejects exactly its
    re-sends."""
    slot = key_slot(b"key:0")
    report, target = run_migrating(nodes, slot, {})
    assert nodes[target].execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 1
    assert report.errors == {}  # nothing lost: every redirected request was answered
    redirects = redirects_of(report)
    shards: dict[str, int] = {}
    for interval in report.intervals:
        for endpoint, latencies in interval.shards.items():
            shards[endpoint] = shards.get(endpoint, 0) + latencies.count
    assert redirects.get("MOVED", 0) >= 1  # the old primary redirected, followed
    stats = {port: commandstats(client) for port, client in nodes.items()}
    calls = {f"{SERVER}:{port}": sum(stats[port].get(name, {}).get("calls", 0)
                                     for name in ("set", "get")) for port in PORTS}
    assert calls == shards  # per shard: every reply it gave, counted where it was given
    assert sum(calls.values()) == sum(i.count for i in report.intervals) == sum(
        i.requests for i in report.intervals)
    rejected = sum(stats[port].get(name, {}).get("rejected_calls", 0)
                   for port in PORTS for name in ("set", "get"))
    assert rejected == sum(redirects.values())  # each redirect: one request Redis refused
    asking = sum(stats[port].get("asking", {}).get("calls", 0) for port in PORTS)
    assert asking == redirects.get("ASK", 0)
    assert "MOVED" not in report.intervals[-1].redirects  # the slot's keys now go to the target



def test_a_redirected_multi_block_is_sent_again_whole_and_none_is_lost(
    nodes: dict[int, redis.Redis],
) -> None:
    """A MULTI block on a hash tag whose slot migrates mid-run: Redis redirects its queued
    commands and aborts the transaction (EXECABORT); the block is sent again whole, so no
    error is counted and each block coord counts is one transaction Redis executed."""
    slot = key_slot(b"t")
    assert all(key_slot(b"key:%d" % n) != slot for n in range(50))  # the SETs' keys stay put
    # the SETs give every primary requests of its own: no connection sends others' (MOVED)
    mix = [{"multi": [["INCR", "{t}:{key}"], ["GET", "{t}:{key:last}"]]},
           {"command": ["SET", "{key}", "{value}"]}]
    report, target = run_migrating(nodes, slot, {"templates": mix, "preload": False})
    assert report.errors == {}  # no EXECABORT, no MOVED: every block ended in a transaction
    redirects = redirects_of(report)
    assert redirects.get("MOVED", 0) >= 1
    stats = {port: commandstats(client) for port, client in nodes.items()}
    incr = [stats[port].get("incr", {}) for port in PORTS]
    blocks = sum(i.commands["MULTI"].count for i in report.intervals if "MULTI" in i.commands)
    assert sum(entry.get("calls", 0) for entry in incr) == blocks > 0  # one INCR per transaction
    assert stats[target].get("incr", {}).get("calls", 0) > 0  # the blocks moved with the slot
    # each redirection refused the block's INCR once (its GET too: the same key)
    assert sum(entry.get("rejected_calls", 0) for entry in incr) == sum(redirects.values())
    asking = sum(stats[port].get("asking", {}).get("calls", 0) for port in PORTS)
    assert asking == redirects.get("ASK", 0)
    assert "MOVED" not in report.intervals[-1].redirects


TEMPLATE_MIX = [
    {"command": ["SET", "{key}", "{value}"], "weight": 2},
    {"command": ["GET", "{key}"], "weight": 3},
    {"command": ["HSET", "{profile}:{key}", "visits", "{int:1:100}"], "weight": 1},
    {"command": ["MGET", "{pair}:{key}", "{pair}:{key}"], "weight": 1},
]


def inventory_with(lab: LabStatus, tmp_path: Path, templates: list[dict[str, object]]) -> Path:
    """The lab's inventory with ``templates`` as the builtin driver's mix."""
    inventory = yaml.safe_load(lab.inventory_path.read_text())
    builtin = inventory.setdefault("benchmark", {}).setdefault("builtin", {})
    builtin["templates"] = templates
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def test_a_template_mix_is_routed_by_slot_and_counted_as_redis_counts_it(
    nodes: dict[int, redis.Redis], lab: LabStatus, tmp_path: Path
) -> None:
    """SET/GET, an HSET and an MGET on hash tags against 3 primaries: no redirection, no error,
    and every command's count (and every primary's) is Redis's commandstats."""
    for client in nodes.values():
        client.config_resetstat()
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "run", "-i",
         str(inventory_with(lab, tmp_path, TEMPLATE_MIX)),
         "--out", str(out), "--repetitions", "1", "--warmup", "1s", "--duration", "1s",
         "--no-baseline", "--set", "benchmark.builtin.connections=3",
         "--set", "benchmark.builtin.processes=1", "--set", "benchmark.builtin.pipeline=4",
         "--set", "benchmark.builtin.keyspace=1000", "--set", "benchmark.builtin.preload=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "per primary" in result.stdout  # the terminal summary's table
    document = load_results(out / "results.json")
    repetition = document.repetitions[0]
    assert repetition.errors == {} and repetition.redirects == {}
    stats = {port: commandstats(client) for port, client in nodes.items()}
    # every interval (warm-up too) against Redis's counters, which saw them all
    totals: dict[str, int] = {}
    shards: dict[str, int] = {}
    for agent in repetition.agents:
        for interval in agent.intervals:
            assert not interval.errors and not interval.redirects
    for name in ("set", "get", "hset", "mget"):
        calls = sum(stats[port].get(name, {}).get("calls", 0) for port in PORTS)
        totals[name.upper()] = calls
        assert sum(stats[port].get(name, {}).get("rejected_calls", 0) for port in PORTS) == 0
    for port in PORTS:
        shards[f"{SERVER}:{port}"] = sum(stats[port].get(name, {}).get("calls", 0)
                                         for name in ("set", "get", "hset", "mget"))
    assert all(count > 0 for count in totals.values())
    assert sum(totals.values()) == sum(
        interval.requests for agent in repetition.agents for interval in agent.intervals)
    measured = sum(interval.count for agent in repetition.agents for interval in agent.intervals
                   if interval.in_window)
    assert sum(shard.count for shard in repetition.shards.values()) == repetition.count == measured
    assert set(repetition.shards) == set(shards)
    # the hash-tagged HSET and MGET all went to one primary each: their slots' owners
    hset_port = next(port for port in PORTS if stats[port].get("hset", {}).get("calls"))
    assert [p for p in PORTS if stats[p].get("hset", {}).get("calls")] == [hset_port]
    assert [p for p in PORTS if stats[p].get("mget", {}).get("calls")] == [next(
        p for p in PORTS if stats[p].get("mget", {}).get("calls"))]


def test_a_multi_key_template_off_one_slot_is_refused_naming_it(
    lab: LabStatus, tmp_path: Path
) -> None:
    bad = [{"command": ["GET", "{key}"]}, {"command": ["MGET", "{key}", "{key}"]}]
    result = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "run", "-i",
         str(inventory_with(lab, tmp_path, bad)), "--out", str(tmp_path / "r"), "--no-baseline"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "benchmark.builtin.templates[1]: MGET against a Redis Cluster: its keys ({key}, " \
        "{key}) must hash to one slot" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
