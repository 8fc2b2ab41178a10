"""The http driver's pure parts: request templates and their expansion, response parsing
(Content-Length, chunked, split and joined reads), status classes and JSON checks, params,
and the inventory's http server kind and spec builder."""

from __future__ import annotations

import base64
import json

import httptools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.drivers.errors import DriverError
from agent.drivers.http_driver import HttpDriver
from agent.drivers.http_params import parse_params, plan
from agent.drivers.http_request import Body, RequestTemplate, compile_request, picker
from agent.drivers.http_response import (
    ParseError,
    ResponseReader,
    has_json_path,
    status_error,
)
from agent.drivers.spec import parse_spec
from agent.drivers.worker import OpenLoopPlan
from coordinator.inventory.checks import check_references
from coordinator.inventory.schema import Inventory
from coordinator.run.loadspec import load_spec


def parse_request(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """A rendered request read back by a real HTTP parser: (url, headers, body)."""
    seen: dict[str, object] = {"headers": {}, "body": b""}

    class Sink:
        def on_url(self, url: bytes) -> None:
            seen["url"] = url.decode()

        def on_header(self, name: bytes, value: bytes) -> None:
            seen["headers"][name.decode().lower()] = value.decode()  # type: ignore[index]

        def on_body(self, body: bytes) -> None:
            seen["body"] += body  # type: ignore[operator]

        def on_message_complete(self) -> None:
            seen["complete"] = True

    httptools.HttpRequestParser(Sink()).feed_data(raw)
    assert seen.get("complete")
    return str(seen["url"]), seen["headers"], seen["body"]  # type: ignore[return-value]


def test_a_json_template_expands_its_placeholders_and_sizes_its_body() -> None:
    template = RequestTemplate(
        name="score", method="POST", path="/score/{seq}?k={rand_int}",
        headers={"X-Seq": "{seq}", "host": "ignored-by-the-template"},
        body=Body("json", {"id": "{seq}", "key": "user:{rand_int}", "braces": "{x}"}))
    compiled = compile_request(template, "10.0.0.1:8080", {"Authorization": "Bearer t"},
                               base_path="/v1/")
    assert compiled.static is None
    url, headers, body = parse_request(compiled.render(41, 7))
    assert url == "/v1/score/41?k=7"
    assert headers["x-seq"] == "41"
    assert headers["authorization"] == "Bearer t"
    assert headers["host"] == "ignored-by-the-template"  # a template's header overrides
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body) == {"id": "41", "key": "user:7", "braces": "{x}"}


@given(seq=st.integers(0, 10**12), rand=st.integers(0, 10**12),
       text=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40))
def test_any_text_body_round_trips_through_a_real_parser(seq: int, rand: int,
                                                         text: str) -> None:
    template = RequestTemplate(name="t", method="PUT", path="/p",
                               body=Body("text", text + "{seq}|{rand_int}"))
    _url, headers, body = parse_request(compile_request(template, "h", {}).render(seq, rand))
    assert body.decode() == f"{text}{seq}|{rand}"
    assert int(headers["content-length"]) == len(body)


def test_a_template_without_placeholders_is_rendered_once() -> None:
    raw = bytes(range(256))
    template = RequestTemplate(name="img", method="POST", path="/predict",
                               body=Body("binary", raw))
    compiled = compile_request(template, "h", {})
    assert compiled.static is not None
    assert compiled.render(1, 2) is compiled.static
    assert parse_request(compiled.static)[2] == raw


def test_weights_choose_templates_in_proportion() -> None:
    draws = iter(i / 1000 for i in range(1000))
    pick = picker([1, 3], lambda: next(draws))
    chosen = [pick() for _ in range(1000)]
    assert chosen.count(0) == 250 and chosen.count(1) == 750


RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: application/json\r\n\r\n"
            b'{"a": [1, 2]}')
CHUNKED = (b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n")
CLOSE = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"


def test_responses_are_read_whole_whatever_the_reads_boundaries() -> None:
    stream = RESPONSE + CHUNKED + CLOSE
    for size in (1, 7, len(stream)):
        reader = ResponseReader(keep_bodies=True)
        for start in range(0, len(stream), size):
            reader.feed(stream[start:start + size])
        assert reader.done == [(200, b'{"a": [1, 2]}', True), (500, b'{"a": 1}', True),
                               (404, b"no", False)]


def test_a_partial_response_is_not_complete_and_bodies_are_dropped_unless_kept() -> None:
    reader = ResponseReader()
    reader.feed(RESPONSE[:-1])
    assert reader.done == []
    reader.feed(RESPONSE[-1:])
    assert reader.done == [(200, None, True)]


def test_garbage_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        ResponseReader().feed(b"+PONG\r\n")


@pytest.mark.parametrize(("status", "expected", "kind"), [
    (200, None, None), (204, None, None), (301, None, "http_status"), (404, None, "http_4xx"),
    (503, None, "http_5xx"), (201, 201, None), (200, 201, "http_status"), (404, 404, None),
])
def test_statuses_are_classed(status: int, expected: int | None, kind: str | None) -> None:
    assert status_error(status, expected) == kind


def test_json_paths() -> None:
    body = b'{"outputs": [{"data": [0.5]}], "n": null}'
    assert has_json_path(body, "outputs.0.data.0")
    assert has_json_path(body, "n")
    assert not has_json_path(body, "outputs.1")
    assert not has_json_path(body, "outputs.x")
    assert not has_json_path(b"not json", "")
    assert not has_json_path(None, "")


PARAMS = {"processes": None, "connections": 5, "keyspace": 10, "timeout_ns": 10**9,
          "rate": None, "base_path": "", "headers": {},
          "requests": [{"name": "a", "method": "GET", "path": "/", "headers": {}, "body": None,
                        "weight": 1, "expect_status": None, "json_path": None}]}


def test_params_plan_one_process_per_core_at_most_one_per_connection() -> None:
    params = parse_params(json.loads(json.dumps(PARAMS)))
    assert plan(params, cores=2) == [3, 2]
    assert plan(params, cores=16) == [1] * 5


@pytest.mark.parametrize(("field", "value", "message"), [
    ("rate", 0.0, "rate"),
    ("arrivals", "burst", "arrivals"),
    ("requests", [], "non-empty"),
    ("base_path", "v1", "start with /"),
    ("headers", {"Bad Name": "x"}, "not a valid header"),
])
def test_params_refused_with_one_line(field: str, value: object, message: str) -> None:
    params = json.loads(json.dumps(PARAMS))
    params[field] = value
    with pytest.raises(DriverError, match=message):
        parse_params(params)


def test_a_head_request_or_a_bad_body_is_refused() -> None:
    params = json.loads(json.dumps(PARAMS))
    params["requests"][0]["method"] = "HEAD"
    with pytest.raises(DriverError, match="method"):
        parse_params(params)
    params["requests"][0].update(method="POST", body={"text": "a", "json": 1})
    with pytest.raises(DriverError, match="exactly one"):
        parse_params(params)


def inventory(driver: str, kind: str, **http: object) -> Inventory:
    return Inventory.model_validate({
        "version": 1, "name": "t",
        "hosts": [{"name": "s", "address": "10.0.0.1", "roles": ["server"]},
                  {"name": "c", "address": "10.0.0.2", "roles": ["client"]}],
        "servers": [{"name": "rest", "host": "s", "port": 8000, "kind": kind,
                     "http": {"base_path": "/v2", "headers": {"X-A": "1"}}}],
        "benchmark": {"driver": driver, "http": {"requests": [
            {"name": "infer", "method": "POST", "path": "/models/m/infer",
             "body": {"base64": base64.b64encode(b"\x00\x01").decode()},
             "expect_status": 200, "json_path": "outputs"}], **http}},
    })


def test_the_http_driver_needs_an_http_server_and_the_others_a_resp_one() -> None:
    assert not check_references(inventory("http", "http"))
    problems = check_references(inventory("http", "resp"))
    assert [problem.path for problem in problems] == ["servers[0].kind"]
    assert "loads kind http servers" in problems[0].message
    assert [p.path for p in check_references(inventory("builtin", "http"))] == [
        "servers[0].kind"]


def test_the_spec_builder_carries_templates_base_path_and_headers_to_the_agent() -> None:
    text = load_spec(inventory("http", "http"), password=None)
    params = parse_params(json.loads(text)["params"])
    assert params.base_path == "/v2" and dict(params.headers) == {"X-A": "1"}
    (request,) = params.requests
    assert request.body == Body("binary", b"\x00\x01")
    assert (request.expect_status, request.json_path) == (200, "outputs")
    assert params.timeout_ns == 10 * 10**9


def test_the_spec_builder_carries_the_open_loop_and_the_driver_plans_it_per_process() -> None:
    """The rate and arrivals reach the agent; the host's connections are numbered across its
    load processes (the schedules are staggered over all of them), as the builtin driver's."""
    loaded = inventory("http", "http", rate=500.0, arrivals="poisson", connections=5)
    spec = json.loads(load_spec(loaded, password=None))
    params = parse_params(spec["params"])
    assert (params.rate, params.arrivals) == (500.0, "poisson")
    plans = HttpDriver(cores=2).plan_load(parse_spec(json.dumps(spec)))
    loops = [OpenLoopPlan.from_json(p.config["open_loop"]) for p in plans]
    assert loops == [OpenLoopPlan(500.0, "poisson", 5, 0), OpenLoopPlan(500.0, "poisson", 5, 3)]
    closed_loop = inventory("http", "http", connections=5)
    closed = HttpDriver(cores=2).plan_load(parse_spec(load_spec(closed_loop, password=None)))
    assert all(p.config["open_loop"] is None for p in closed)


def test_an_unreadable_ca_file_is_refused_with_one_line_before_any_load() -> None:
    spec = json.loads(load_spec(inventory("http", "http"), password=None))
    spec["target"]["tls"] = {"ca_file": "/nonexistent/ca.crt"}
    with pytest.raises(DriverError, match=r"tls\.ca_file /nonexistent/ca\.crt"):
        HttpDriver(cores=1).plan_load(parse_spec(json.dumps(spec)))
