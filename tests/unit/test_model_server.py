"""The model server's pure parts: the three API shapes' bodies, its settings, the lab spec's
model-server options, the lab inventory's http entry, and the one-line refusal when the
``model-server`` extra is missing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from coordinator.core.errors import LabError, UsageError
from coordinator.inventory.loader import parse_inventory
from coordinator.lab import model_server as lab_model_server
from coordinator.lab.api import lab_up
from coordinator.lab.config_files import (
    lab_inventories,
    render_inventory,
    render_model_inventory,
)
from coordinator.lab.model_server import Interpreter, gunicorn_argv, service_environ
from coordinator.lab.plan import LabPaths, LabSpec, plan_hosts
from coordinator.lab.state import LabState, state_from_json, state_to_json
from coordinator.modelserver import shapes
from coordinator.modelserver.settings import ServerSettings

TRANSACTION = [float(index) for index in range(30)]


def test_the_common_rest_fraud_body() -> None:
    batch = shapes.rest_fraud({"customer_id": 17, "transaction": TRANSACTION})
    assert batch.features.shape == (1, 30) and batch.features.dtype == np.float32
    assert batch.customers.tolist() == [17]


@pytest.mark.parametrize("body", [
    {"customer_id": 17},
    {"customer_id": 17, "transaction": TRANSACTION[:29]},
    {"customer_id": -1, "transaction": TRANSACTION},
    {"customer_id": 1.5, "transaction": TRANSACTION},
    {"customer_id": [1, 2], "transaction": TRANSACTION},
    {"customer_id": 1, "transaction": ["a"] * 30},
    [1, 2],
])
def test_a_malformed_fraud_body_is_a_bad_request(body: object) -> None:
    with pytest.raises(shapes.BadRequest):
        shapes.rest_fraud(body)


def test_kserve_v2_bodies_of_both_models() -> None:
    batch = shapes.kserve_fraud({"inputs": [
        {"name": "transaction", "shape": [2, 30], "datatype": "FP32", "data": TRANSACTION * 2},
        {"name": "customer_id", "shape": [2], "datatype": "INT64", "data": [3, 4]}]})
    assert batch.features.shape == (2, 30) and batch.customers.tolist() == [3, 4]
    pixels = np.full(224 * 224 * 3, 255, dtype=np.uint8)
    image = shapes.kserve_image({"inputs": [{"name": "image", "shape": [1, 224, 224, 3],
                                             "datatype": "UINT8", "data": pixels.tolist()}]})
    assert image.shape == (1, 224, 224, 3) and image.dtype == np.float32 and image.max() == 1.0
    response = shapes.kserve_response("fraud", "score", np.array([0.25], np.float32))
    assert response == {"model_name": "fraud", "outputs": [
        {"name": "score", "datatype": "FP32", "shape": [1], "data": [0.25]}]}
    with pytest.raises(shapes.BadRequest, match="fill shape"):
        shapes.kserve_inputs({"inputs": [{"name": "image", "shape": [2, 3], "datatype": "FP32",
                                          "data": [1.0]}]})
    with pytest.raises(shapes.BadRequest, match="datatype"):
        shapes.kserve_inputs({"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES",
                                          "data": ["a"]}]})


def test_tf_serving_bodies_of_both_models() -> None:
    batch = shapes.tfserving_fraud({"instances": [{"customer_id": 9, "transaction": TRANSACTION}]})
    assert batch.customers.tolist() == [9]
    image = shapes.tfserving_image({"instances": np.zeros((1, 224, 224, 3)).tolist()})
    assert image.shape == (1, 224, 224, 3)
    assert shapes.tfserving_response(np.array([[0.5, 0.5]], np.float32)) == {
        "predictions": [[0.5, 0.5]]}
    with pytest.raises(shapes.BadRequest, match="instances"):
        shapes.tfserving_image({"instances": []})


def test_raw_image_bodies_are_uint8_or_float32() -> None:
    assert shapes.raw_images(bytes(224 * 224 * 3)).shape == (1, 224, 224, 3)
    assert shapes.raw_images(bytes(224 * 224 * 3 * 4)).shape == (1, 224, 224, 3)
    with pytest.raises(shapes.BadRequest, match="binary image"):
        shapes.raw_images(b"\x00" * 1000)


def test_settings_round_trip_through_the_environment() -> None:
    settings = ServerSettings(Path("/m"), "198.18.0.10", 6379, Path("/m/redis.password"), 3)
    assert ServerSettings.from_environ(settings.environ()) == settings
    with pytest.raises(ValueError, match="COORD_MODEL_INTRA_OP_THREADS"):
        ServerSettings.from_environ({**settings.environ(), "COORD_MODEL_INTRA_OP_THREADS": "0"})
    with pytest.raises(ValueError, match="COORD_MODEL_DIR"):
        ServerSettings.from_environ({})


def test_the_lab_spec_carries_the_model_server_settings() -> None:
    spec = LabSpec(name="demo", clients=1, model_server=True, model_workers=4, model_threads=2,
                   model_intra_op_threads=2)
    state = state_from_json(state_to_json(LabState(spec=spec, hosts=plan_hosts(spec))))
    assert state.spec == spec
    assert "model server workers/threads/intra-op threads 4/2/2" in spec.describe_difference(
        LabSpec(name="demo", clients=1, model_server=True))
    with pytest.raises(LabError, match="model workers must be between 1 and 64"):
        LabSpec(model_workers=0)


def test_the_model_servers_inventory_is_valid_and_scores_fraud_over_http() -> None:
    spec = LabSpec(name="demo", clients=1, model_server=True)
    inventory = parse_inventory(render_model_inventory(spec, plan_hosts(spec))).inventory
    assert [(s.name, s.kind, s.host, s.port) for s in inventory.servers] == [
        ("model", "http", "server", 8000)]
    assert inventory.benchmark.driver == "http"
    (fraud_request,) = inventory.benchmark.http.requests
    assert (fraud_request.method, fraud_request.path) == ("POST", "/predict")
    assert inventory.benchmark.http.keyspace == 1000
    assert lab_inventories(spec, Path("/x/lab.yaml")) == [Path("/x/lab-model.yaml"),
                                                          Path("/x/lab.yaml")]
    plain = LabSpec(name="demo", clients=1)
    assert lab_inventories(plain, Path("/x/lab.yaml")) == [Path("/x/lab.yaml")]
    main = parse_inventory(render_inventory(spec, plan_hosts(spec))).inventory
    assert [server.kind for server in main.servers] == ["resp"]


def test_gunicorn_runs_with_the_spec_settings_and_a_clean_environment() -> None:
    spec = LabSpec(name="demo", clients=1, model_server=True, model_workers=3, model_threads=5)
    paths = LabPaths.of(spec.name, spec.state_root)
    argv = gunicorn_argv(Interpreter("/usr/bin/python3", "/src"), spec, paths, "198.18.0.10")
    assert argv[:3] == ["/usr/bin/python3", "-m", "gunicorn"]
    assert argv[argv.index("--workers") + 1] == "3" and argv[argv.index("--threads") + 1] == "5"
    assert argv[argv.index("--bind") + 1] == "198.18.0.10:8000"
    settings = ServerSettings(paths.model_dir, "198.18.0.10", 6379, None, 2)
    environ = service_environ(Interpreter("/usr/bin/python3", "/src"), "demo-server", settings)
    assert environ["PYTHONPATH"] == "/src" and environ["HOME"] == "/home/demo-server"
    assert environ["COORD_MODEL_INTRA_OP_THREADS"] == "2"
    assert "PYTHONPATH" not in service_environ(Interpreter("/venv/bin/python"), "u", settings)


@pytest.mark.skipif(os.geteuid() != 0, reason="lab_up checks for root first")
def test_without_the_extra_lab_up_model_server_fails_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setattr(lab_model_server, "REQUIRED_MODULES",
                        ("numpy", "coord_no_such_module"))
    spec = LabSpec(name="noextra", clients=1, model_server=True, state_root=tmp_path / "state")
    with pytest.raises(UsageError) as raised:
        lab_up(spec, tmp_path / "lab.yaml")
    message = str(raised.value)
    assert "\n" not in message and "'model-server' extra" in message
    assert "coord_no_such_module" in message
    assert not (tmp_path / "state").exists(), "nothing was built"
