"""``coord run`` against the lab's model server (issue 16): the use cases over HTTP with every
guarantee of a run, counted against what the service itself did.

Needs root. Two labs with ``--model-server``, built when first used and always torn down:
``mrun16`` (198.18.242.0/24, two clients, two Gunicorn workers) for the use cases, and
``mcpu16`` (198.18.243.0/24, one client held to a tenth of a core, one worker) for the
client-bound verdict (a lab's CPU quota applies to all its clients, and would slow every run).
Every fraud request fetches its customer's reference data from the lab's Redis with one
``MGET``, so Redis's ``cmdstat_mget`` (reset before the run) is the service's own count of
what it scored. The server host's sampler finds Gunicorn's processes by their listening port
(the server-bound evidence). Runs are short: 1 s of warm-up, 1 s measured, 500 ms intervals,
no baseline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from coordinator.core import marks
from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus
from coordinator.lab.config_files import model_inventory_path
from coordinator.lab.plan import LabPaths
from coordinator.results import Repetition
from coordinator.run.runner import RunOutcome, run_benchmark
from tests.helpers import MeasureView, lab_redis, module_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

CLIENT_CPU = 0.1
SPEC = LabSpec(name="mrun16", clients=2, subnet="198.18.242.0/24", model_server=True,
               model_workers=2)
CPU_SPEC = LabSpec(name="mcpu16", clients=1, subnet="198.18.243.0/24", model_server=True,
                   model_workers=1, client_cpu=CLIENT_CPU)
PATHS = LabPaths.of(SPEC.name, SPEC.state_root)
TRANSACTION = [0.5] * 30
FRAUD: dict[str, Any] = {
    "name": "fraud", "method": "POST", "path": "/predict",
    "body": {"json": {"customer_id": "{rand_int}", "transaction": "{tensor:float32:30:random}"}},
    "expect_status": 200, "json_path": "score"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(SPEC, tmp_path_factory.mktemp("model-runs"))


@pytest.fixture(scope="module")
def cpu_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(CPU_SPEC, tmp_path_factory.mktemp("model-cpu"))


def run(lab: LabStatus, tmp_path: Path, requests: list[dict[str, Any]], *,
        repetitions: int = 1, thresholds: dict[str, Any] | None = None,
        **http: Any) -> RunOutcome:
    """A short run of the lab's model inventory (``lab-model.yaml``) with ``requests``."""
    document = yaml.safe_load(model_inventory_path(lab.inventory_path).read_text())
    document["benchmark"] = {
        "driver": "http", "repetitions": repetitions, "warmup": "1s", "duration": "1s",
        "interval": "500ms", "thresholds": thresholds or {},
        "http": {"processes": 1, "connections": 4, "keyspace": 1000, "requests": requests,
                 **http},
    }
    document["baseline"] = {"enabled": False}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(document))
    return run_benchmark(load_inventory(path), tmp_path / "out", MeasureView())


def reset_stats(lab: LabStatus) -> None:
    with lab_redis(lab) as client:
        client.config_resetstat()


def mget_calls(lab: LabStatus) -> int:
    with lab_redis(lab) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


def finished(repetition: Repetition) -> int:
    """Every request the agents finished, warm-up and drain included: what the server saw."""
    return sum(i.requests for agent in repetition.agents for i in agent.intervals)


def test_fraud_on_two_clients_three_repetitions_merged_and_counted_by_the_service(
        lab: LabStatus, tmp_path: Path) -> None:
    reset_stats(lab)
    outcome = run(lab, tmp_path, [FRAUD], repetitions=3)
    document = outcome.document
    assert document.status == "complete"
    assert len(document.repetitions) == 3
    for repetition in document.repetitions:
        assert sorted(agent.host for agent in repetition.agents) == ["client1", "client2"]
        assert repetition.errors == {}, repetition.errors
        assert repetition.count == sum(agent.count for agent in repetition.agents) > 0
        assert repetition.count == repetition.commands["fraud"].count
        print(f"repetition {repetition.index}: {repetition.ops_per_sec:.0f} scores/s, p50 "
              f"{repetition.latency_usec.p50} µs, p99 {repetition.latency_usec.p99} µs")
    assert document.summary is not None
    # the service scored exactly what the agents sent: one MGET per /predict
    assert sum(finished(r) for r in document.repetitions) == mget_calls(lab)
    # The model server's process CPU is the server-bound evidence: the server host's sampler
    # watches Gunicorn's master and every worker (they share the listening socket, port 8000).
    master = psutil.Process(int((PATHS.model_dir / "gunicorn.pid").read_text()))
    gunicorn = {master.pid, *(child.pid for child in master.children())}
    assert len(gunicorn) == 1 + SPEC.model_workers
    for repetition in document.repetitions:
        (server,) = [m for m in repetition.metrics if "server" in m.roles]
        measured = [i for i in server.intervals if i.phase == "measure"]
        assert measured and "server_processes" not in server.missing, server.missing
        for interval in measured:
            assert {p.pid for p in interval.server_processes} == gunicorn, interval.missing
        busy = sum(p.cpu_percent for i in measured for p in i.server_processes) / len(measured)
        (verdict,) = [v for v in repetition.verdicts if v.name == marks.SERVER_BOUND.name]
        print(f"gunicorn at {busy:.0f} % of a core; server-bound: {verdict.summary}")
        assert busy > 0


def test_classification_with_a_binary_image_body(lab: LabStatus, tmp_path: Path) -> None:
    outcome = run(lab, tmp_path, [
        {"name": "classify", "method": "POST", "path": "/classify",
         "headers": {"Content-Type": "application/octet-stream"},
         "body": {"tensor": "uint8:224x224x3"}, "expect_status": 200,
         "json_path": "scores.1000"}], connections=2)
    (repetition,) = outcome.document.repetitions
    print(f"classify: {repetition.ops_per_sec:.1f} images/s, p50 "
          f"{repetition.latency_usec.p50} µs, errors {repetition.errors}")
    assert outcome.document.status == "complete"
    assert repetition.errors == {}
    assert set(repetition.commands) == {"classify"}
    assert repetition.count == repetition.commands["classify"].count > 0


def test_kserve_v2_and_tf_serving_shapes_weighted(lab: LabStatus, tmp_path: Path) -> None:
    reset_stats(lab)
    outcome = run(lab, tmp_path, [
        {"name": "kserve", "method": "POST", "path": "/v2/models/fraud/infer", "weight": 3,
         "body": {"json": {"inputs": [
             {"name": "transaction", "shape": [1, 30], "datatype": "FP32",
              "data": "{tensor:float32:30:random}"},
             {"name": "customer_id", "shape": [1], "datatype": "INT64",
              "data": ["{rand_int}"]}]}},
         "expect_status": 200, "json_path": "outputs.0.data.0"},
        {"name": "tfserving", "method": "POST", "path": "/v1/models/fraud:predict", "weight": 1,
         "body": {"json": {"instances": [
             {"customer_id": "{rand_int}", "transaction": TRANSACTION}]}},
         "expect_status": 200, "json_path": "predictions.0"}])
    (repetition,) = outcome.document.repetitions
    assert outcome.document.status == "complete"
    assert repetition.errors == {}, repetition.errors
    kserve, tfserving = repetition.commands["kserve"].count, repetition.commands["tfserving"].count
    print(f"kserve {kserve}, tfserving {tfserving}, p50 {repetition.latency_usec.p50} µs")
    assert kserve + tfserving == repetition.count
    assert kserve > tfserving > 0  # weights 3:1
    assert finished(repetition) == mget_calls(lab)


def test_an_open_loop_at_a_fixed_rate_against_predict(lab: LabStatus, tmp_path: Path) -> None:
    rate = 100  # requests/s per load process, far below what the service answers
    reset_stats(lab)
    outcome = run(lab, tmp_path, [FRAUD], rate=rate)
    (repetition,) = outcome.document.repetitions
    assert outcome.document.status == "complete"
    assert repetition.errors == {}
    sent = sum(i.sent or 0 for agent in repetition.agents for i in agent.intervals)
    assert sent == finished(repetition) == mget_calls(lab)
    for agent in repetition.agents:
        print(f"{agent.host}: sent {agent.sent_per_sec}/s, late "
              f"{[i.late for i in agent.intervals]}, behind {agent.behind_schedule}")
        assert agent.sent_per_sec is not None and agent.sent_per_sec > 0


def test_a_client_held_to_a_tenth_of_a_core_is_client_bound(
        cpu_lab: LabStatus, tmp_path: Path) -> None:
    """The quota'd client cannot keep up with the service: its cgroup is throttled, and the
    verdict names it. Every lab host reads this machine's /proc/stat, so the client is judged
    by what is its own (its throttling), not by the host's total CPU."""
    outcome = run(cpu_lab, tmp_path, [FRAUD], connections=8,
                  thresholds={"client_cpu_percent": 100})
    (repetition,) = outcome.document.repetitions
    assert outcome.document.status == "complete"
    assert repetition.errors == {}, repetition.errors
    (verdict,) = [v for v in repetition.verdicts if v.name == marks.CLIENT_BOUND.name]
    print(f"{repetition.ops_per_sec:.0f} scores/s; client-bound: {verdict.summary}")
    assert verdict.state == "flagged" and verdict.hosts == ["client1"], verdict.summary
    assert verdict.summary.startswith("client1 was the bottleneck: ")
    assert "cgroup_throttled_periods" in {e.metric for e in verdict.evidence}
    (server_bound,) = [v for v in repetition.verdicts if v.name == marks.SERVER_BOUND.name]
    assert server_bound.state == "clear" and "client1 ran out of CPU first" in (
        server_bound.summary)
