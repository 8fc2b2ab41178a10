"""The request templates of every model server in the seed (inventory/model-serving-*.yaml):
each shipped inventory is valid, and each of its templates, expanded as the agent expands it,
gives a request whose body parses and holds a tensor of the server's shape and dtype. Also the
``{tensor:...}`` placeholder and the ``tensor``/``file`` bodies of the http driver, and the
builtin driver's ``{key:last}``. Pure."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path
from typing import Any

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.drivers.builtin_params import parse_params as parse_builtin_params
from agent.drivers.http_params import parse_params as parse_http_params
from agent.drivers.http_request import (
    Body,
    RequestTemplate,
    body_from_json,
    compile_request,
)
from agent.drivers.http_tensors import parse_tensor
from agent.drivers.keyspace import Keyspace
from agent.drivers.templates import Expander, parse_templates
from coordinator.core.errors import InventoryError
from coordinator.inventory.checks import check_references
from coordinator.inventory.loader import load_inventory, parse_inventory
from coordinator.run.loadspec import builtin_params, http_params
from tests.unit.test_http_request import parse_request

INVENTORY = Path(__file__).parents[2] / "inventory"
SHIPPED = sorted(path.name for path in INVENTORY.glob("model-serving-*.yaml"))


def rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 (a load, not a secret)


def shape_of(value: Any) -> tuple[int, ...]:
    """A nested JSON list's shape (every row checked to have the same length)."""
    if not isinstance(value, list):
        return ()
    inner = {shape_of(item) for item in value}
    assert len(inner) == 1, f"ragged array: {inner}"
    return (len(value), *inner.pop())


def leaves(value: Any) -> list[Any]:
    return [leaf for item in value for leaf in leaves(item)] if isinstance(value, list) \
        else [value]


def floats(value: Any, shape: tuple[int, ...]) -> None:
    assert shape_of(value) == shape
    assert all(isinstance(x, float) and 0.0 <= x < 1.0 for x in leaves(value))


def rendered(name: str) -> dict[str, tuple[str, dict[str, str], bytes]]:
    """Each http template of a shipped inventory, as the agent renders it: (url, headers, body)."""
    inventory = load_inventory(INVENTORY / name).inventory
    params = parse_http_params({**http_params(inventory, True), "seed": None})
    files = {"/var/lib/coord-data/image.jpg": b"\xff\xd8\xff\xe0 a jpeg"}
    out = {}
    for template in params.requests:
        compiled = compile_request(template, "server:8000", params.headers, params.base_path,
                                   random=rng(3), read_file=files.__getitem__)
        out[template.name] = parse_request(compiled.render(5, 42))
    return out


def test_the_seed_servers_each_ship_an_inventory() -> None:
    expected = [f"model-serving-{server}.yaml"
                for server in ("redisai", "rest", "tfserving", "torchserve", "triton")]
    assert expected == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_inventory_is_valid(name: str) -> None:
    loaded = load_inventory(INVENTORY / name)
    assert loaded.warnings == []
    assert check_references(loaded.inventory) == []


def test_the_rest_service_gets_30_features_and_a_224x224x3_image() -> None:
    requests = rendered("model-serving-rest.yaml")
    url, headers, body = requests["fraud"]
    assert url == "/predict" and headers["content-type"] == "application/json"
    fraud = json.loads(body)
    assert fraud["customer_id"] == "42"
    floats(fraud["transaction"], (30,))
    url, headers, body = requests["classify"]
    assert url == "/classify" and headers["content-type"] == "application/octet-stream"
    assert len(body) == 224 * 224 * 3  # one HWC uint8 image, as the lab's service reads it


def test_tf_serving_gets_instances_and_inputs_under_its_models_path() -> None:
    requests = rendered("model-serving-tfserving.yaml")
    url, _headers, body = requests["fraud"]
    assert url == "/v1/models/fraud:predict"
    floats(json.loads(body)["instances"], (1, 30))
    url, _headers, body = requests["classify"]
    assert url == "/v1/models/mobilenet:predict"
    floats(json.loads(body)["inputs"], (1, 224, 224, 3))


def test_triton_gets_kserve_v2_inputs_whose_data_matches_their_shape() -> None:
    requests = rendered("model-serving-triton.yaml")
    for name, model, shape in (("fraud", "fraud", [1, 30]),
                               ("classify", "mobilenet", [1, 224, 224, 3])):
        url, _headers, body = requests[name]
        assert url == f"/v2/models/{model}/infer"
        (tensor,) = json.loads(body)["inputs"]
        assert tensor["shape"] == shape and tensor["datatype"] == "FP32"
        count = 1
        for dim in shape:
            count *= dim
        floats(tensor["data"], (count,))


def test_torchserve_gets_json_features_and_an_image_file() -> None:
    requests = rendered("model-serving-torchserve.yaml")
    url, _headers, body = requests["fraud"]
    assert url == "/predictions/fraud"
    floats(json.loads(body)["data"], (30,))
    url, headers, body = requests["classify"]
    assert url == "/predictions/mobilenet"
    assert headers["content-type"] == "image/jpeg"
    assert body == b"\xff\xd8\xff\xe0 a jpeg"


def test_redisai_gets_one_dag_per_inference_with_its_tensor_blob_and_reference_key() -> None:
    inventory = load_inventory(INVENTORY / "model-serving-redisai.yaml").inventory
    params = parse_builtin_params(builtin_params(inventory, False))
    assert params.templates is not None
    expander = Expander(parse_templates(params.templates),
                        Keyspace(params.keyspace, params.key_prefix), params.value_size,
                        rng(1))
    seen: dict[str, int] = {}
    for _ in range(60):
        payload, kinds, _checks = expander.expand()
        reader = hiredis.Reader()
        reader.feed(payload)
        words = reader.gets()
        assert reader.gets() is False
        name = expander.commands[kinds[0]]
        seen[name] = seen.get(name, 0) + 1
        stages = b" ".join(w if len(w) < 64 else b"BLOB" for w in words).split(b" |> ")
        assert words[0] == b"AI.DAGEXECUTE"
        assert [stage.split()[0] for stage in stages[1:]] == [
            b"AI.TENSORSET", b"AI.MODELEXECUTE", b"AI.TENSORGET"]
        blob = words[words.index(b"BLOB") + 1]
        if name == "fraud":
            reference = words[3]
            assert reference.startswith(b"referenceTensor:")
            assert words[words.index(b"INPUTS") + 3] == reference  # {key:last}
            assert len(blob) == 30 * 4
        else:
            assert len(blob) == 224 * 224 * 3 * 4
    assert set(seen) == {"fraud", "classify"}


def test_key_last_repeats_the_key_drawn_before_it_in_the_request() -> None:
    templates = parse_templates([{"multi": [["SET", "a:{key}", "1"],
                                            ["GET", "{key:last}"], ["GET", "{key}"]]}])
    expander = Expander(templates, Keyspace(10**9, "k:"), 8, rng(2))
    for _ in range(20):
        reader = hiredis.Reader()
        reader.feed(expander.expand()[0])
        commands = []
        while (command := reader.gets()) is not False:
            commands.append(command)
        assert commands[1][1] == b"a:" + commands[2][1]
        assert commands[2][1] != commands[3][1]


@given(dtype=st.sampled_from(["float32", "float64", "uint8", "int8", "int64", "bool"]),
       shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
       random_each=st.booleans(), seed=st.integers(0, 2**32))
def test_a_json_tensor_has_its_shape_and_dtype_whatever_they_are(
        dtype: str, shape: list[int], random_each: bool, seed: int) -> None:
    spec = f"{dtype}:{'x'.join(map(str, shape))}" + (":random" if random_each else "")
    template = RequestTemplate(name="t", method="POST", path="/p",
                               body=Body("json", {"x": f"{{tensor:{spec}}}", "n": "{seq}"}))
    compiled = compile_request(template, "h", {}, random=rng(seed))
    assert compiled.static is None  # {seq} varies
    first = json.loads(parse_request(compiled.render(1, 2))[2])
    second = json.loads(parse_request(compiled.render(2, 2))[2])
    assert shape_of(first["x"]) == tuple(shape)
    values = leaves(first["x"])
    if dtype.startswith("float"):
        assert all(isinstance(v, float) and 0 <= v < 1 for v in values)
    elif dtype == "bool":
        assert all(isinstance(v, bool) for v in values)
    else:
        low = -128 if dtype.startswith("int") else 0
        assert all(isinstance(v, int) and low <= v < low + 256 for v in values)
    if not random_each:
        assert first["x"] == second["x"]  # drawn once per load process


def test_a_fixed_tensor_alone_is_rendered_once_and_a_random_one_every_time() -> None:
    fixed = compile_request(RequestTemplate(
        name="t", method="POST", path="/p",
        body=Body("json", {"x": "{tensor:float32:2x2}"})), "h", {})
    assert fixed.static is not None
    varying = compile_request(RequestTemplate(
        name="t", method="POST", path="/p",
        body=Body("json", {"x": "{tensor:float32:8:random}"})), "h", {},
        random=rng(0))
    assert varying.static is None
    assert len({varying.render(0, 0) for _ in range(20)}) > 10


def test_a_text_body_takes_the_tensor_where_it_stands() -> None:
    body = body_from_json({"text": "x={tensor:uint8:3}"})
    compiled = compile_request(RequestTemplate(name="t", method="POST", path="/", body=body),
                               "h", {})
    text = parse_request(compiled.render(0, 0))[2].decode()
    assert text.startswith("x=[") and len(json.loads(text[2:])) == 3


def test_a_tensor_body_is_its_raw_little_endian_bytes() -> None:
    body = body_from_json({"tensor": "float32:1x3x2"})
    compiled = compile_request(RequestTemplate(name="t", method="POST", path="/", body=body),
                               "h", {}, random=rng(4))
    _url, headers, raw = parse_request(compiled.render(0, 0))
    assert headers["content-type"] == "application/octet-stream"
    values = struct.unpack("<6f", raw)
    assert all(0 <= v < 1 for v in values)


@pytest.mark.parametrize(("body", "problem"), [
    ({"json": {"x": "a{tensor:float32:3}"}}, "whole string value"),
    ({"json": {"x": "{tensor:float33:3}"}}, "DTYPE is one of"),
    ({"text": "{tensor:float32:0x3}"}, "SHAPE is dimensions"),
    ({"json": ["{tensor:float32:3:often}"]}, "DTYPE:SHAPE or DTYPE:SHAPE:random"),
    ({"tensor": "float32:3:random"}, "'float32:3:random': DTYPE:SHAPE,"),
    ({"json": ["{tensor:uint8:5000x5000}"]}, "more than"),
    ({"file": ""}, "file must be a path"),
    ({"json": {"{tensor:float32:3}": 1}}, "a value, not a key"),
])
def test_an_unusable_tensor_or_file_body_is_refused_saying_why(body: dict[str, Any],
                                                               problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        body_from_json(body)


def test_the_inventory_refuses_a_bad_tensor_naming_the_body() -> None:
    text = (INVENTORY / "model-serving-rest.yaml").read_text().replace(
        "tensor:float32:30:random", "tensor:float32:30:rand", 1)
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, "rest.yaml")
    message = str(caught.value)
    assert "benchmark.http.requests[0].body" in message
    assert "DTYPE:SHAPE or DTYPE:SHAPE:random" in message


def test_a_tensor_spec_counts_its_values() -> None:
    assert parse_tensor("float32:1x224x224x3").count == 150_528
