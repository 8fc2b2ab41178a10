"""The lab's model server (``lab up --model-server``), end to end over real sockets.

Needs root. One lab (``mdl16`` on 198.18.240.0/24: one client and the server) for the module,
always torn down. Requests go from the root namespace through the lab's bridge to Gunicorn in
the server's namespace; the fraud endpoint fetches its reference data from the lab's Redis
(Redis's own commandstats show it). The last test takes the lab down and checks that every
process of the service is gone.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml

from coordinator.inventory.loader import load_inventory
from coordinator.lab.api import LabSpec, LabStatus, lab_down, lab_status
from coordinator.lab.config_files import model_inventory_path
from coordinator.lab.plan import LabPaths
from tests.helpers import lab_redis, module_lab, process_gone, when_lab_is_free

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

SPEC = LabSpec(name="mdl16", clients=1, subnet="198.18.240.0/24", model_server=True,
               model_workers=1, model_threads=2)
PATHS = LabPaths.of(SPEC.name, SPEC.state_root)
TRANSACTION = [0.5] * 30
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(SPEC, tmp_path_factory.mktemp("model-lab"))


def url(lab: LabStatus, path: str) -> str:
    address = next(host.address for host in lab.hosts if host.role == "server")
    return f"http://{address}:8000{path}"


def post(lab: LabStatus, path: str, body: Any = None, data: bytes | None = None,
         ) -> tuple[int, Any]:
    payload = json.dumps(body).encode() if data is None else data
    kind = "application/json" if data is None else "application/octet-stream"
    request = urllib.request.Request(url(lab, path), data=payload, method="POST",  # noqa: S310
                                     headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def mget_calls(lab: LabStatus) -> int:
    with lab_redis(lab) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


def test_the_fraud_endpoint_scores_with_reference_data_fetched_from_redis(
    lab: LabStatus,
) -> None:
    before = mget_calls(lab)
    status, answer = post(lab, "/predict", {"customer_id": 17, "transaction": TRANSACTION})
    assert status == 200, answer
    assert answer["customer_id"] == 17 and 0.0 <= answer["score"] <= 1.0
    assert mget_calls(lab) == before + 1, "the reference data came from the lab's Redis"
    status, answer = post(lab, "/predict", {"customer_id": 10**6, "transaction": TRANSACTION})
    assert status == 404 and "no reference data for customer 1000000" in answer["error"]


def test_the_classification_endpoint_answers_1001_class_scores(lab: LabStatus) -> None:
    image = np.full((224, 224, 3), 128, dtype=np.uint8)
    status, answer = post(lab, "/classify", data=image.tobytes())
    assert status == 200, answer
    assert len(answer["scores"]) == 1001 and 0 <= answer["class"] < 1001
    assert abs(sum(answer["scores"]) - 1.0) < 1e-3, "a softmax"


def test_the_kserve_v2_and_tf_serving_shapes_answer_for_both_models(lab: LabStatus) -> None:
    status, answer = post(lab, "/v2/models/fraud/infer", {"inputs": [
        {"name": "transaction", "shape": [2, 30], "datatype": "FP32", "data": TRANSACTION * 2},
        {"name": "customer_id", "shape": [2], "datatype": "INT64", "data": [1, 2]}]})
    assert status == 200, answer
    assert answer["model_name"] == "fraud" and answer["outputs"][0]["shape"] == [2]
    status, answer = post(lab, "/v1/models/fraud:predict",
                          {"instances": [{"customer_id": 3, "transaction": TRANSACTION}]})
    assert status == 200 and len(answer["predictions"]) == 1, answer
    pixels = np.zeros(224 * 224 * 3, dtype=np.uint8).tolist()
    status, answer = post(lab, "/v2/models/mobilenet/infer", {"inputs": [
        {"name": "image", "shape": [1, 224, 224, 3], "datatype": "UINT8", "data": pixels}]})
    assert status == 200, answer
    assert answer["outputs"][0]["shape"] == [1, 1001]
    assert len(answer["outputs"][0]["data"]) == 1001
    status, answer = post(lab, "/v1/models/mobilenet:predict",
                          {"instances": np.zeros((1, 224, 224, 3)).tolist()})
    assert status == 200 and len(answer["predictions"][0]) == 1001, answer


def test_status_inventories_and_the_unprivileged_user(lab: LabStatus) -> None:
    status = lab_status(SPEC.name, SPEC.state_root)
    assert status is not None and status.healthy and status.model_server, status
    model = load_inventory(model_inventory_path(lab.inventory_path)).inventory
    assert [(server.kind, server.port) for server in model.servers] == [("http", 8000)]
    pid = int((PATHS.model_dir / "gunicorn.pid").read_text())
    master = psutil.Process(pid)
    server_user = f"{SPEC.name}-server"
    assert {process.username() for process in [master, *master.children()]} == {server_user}
    assert yaml.safe_load(lab.inventory_path.read_text())["servers"][0]["port"] == 6379


def test_lab_down_stops_every_process_of_the_model_server(lab: LabStatus) -> None:
    master = psutil.Process(int((PATHS.model_dir / "gunicorn.pid").read_text()))
    pids = [master.pid, *(child.pid for child in master.children(recursive=True))]
    assert len(pids) >= 2, "a master and its worker"
    model_inventory = model_inventory_path(lab.inventory_path)
    when_lab_is_free(lambda: lab_down(SPEC.name, SPEC.state_root))
    assert all(process_gone(pid) for pid in pids)
    assert not any(str(PATHS.model_dir) in " ".join(process.info["cmdline"] or [])
                   for process in psutil.process_iter(["cmdline"]))
    assert not model_inventory.exists() and not Path(PATHS.model_dir).exists()
