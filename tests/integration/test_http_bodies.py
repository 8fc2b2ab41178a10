"""The http driver's model-serving bodies reach a real HTTP/1.1 server on loopback
(tests/http_server.py) as the server expects them: a JSON tensor of the template's shape,
picked per request from a pool, and a file's bytes read on the client host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.drivers.errors import KIND_CONFIG, DriverError
from agent.drivers.http_driver import HttpDriver
from tests.helpers import poll_until, process_gone
from tests.http_server import CountingServer, http_server
from tests.integration.test_http_driver import (
    DEADLINE,
    make_spec,
    run_load,
    template,
    totals,
)


@pytest.fixture
def server() -> Iterator[CountingServer]:
    with http_server() as running:
        yield running


@pytest.fixture
def driver() -> Iterator[HttpDriver]:
    made = HttpDriver()
    yield made
    pids = made.worker_pids()
    made.close()
    for pid in pids:
        poll_until(lambda pid=pid: process_gone(pid), DEADLINE,  # type: ignore[misc]
                   f"load process {pid} to exit")


def test_tensor_and_file_bodies_arrive_whole(server: CountingServer, driver: HttpDriver,
                                             tmp_path: Path) -> None:
    image = tmp_path / "image.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    spec = make_spec(server.port, [
        template("fraud", "/ok", method="POST",
                 body={"json": {"customer_id": "{rand_int}",
                                "transaction": "{tensor:float32:30:random}"}}),
        template("classify", "/ok", method="POST", body={"file": str(image)},
                 headers={"Content-Type": "image/jpeg"}),
    ], connections=2)
    _requests, counts, errors = totals(run_load(driver, spec))
    assert errors == {} and counts["fraud"] > 0 and counts["classify"] > 0
    fraud = [json.loads(raw) for raw in server.bodies if raw.startswith(b"{")]
    files = [raw for raw in server.bodies if not raw.startswith(b"{")]
    assert fraud and files
    assert all(len(item["transaction"]) == 30 for item in fraud)
    distinct = {tuple(item["transaction"]) for item in fraud}
    assert len(distinct) > len(fraud) // 2  # picked per request from 1,024 drawn at start
    assert all(raw == image.read_bytes() for raw in files)


def test_a_missing_body_file_fails_the_load_naming_it(driver: HttpDriver,
                                                     server: CountingServer) -> None:
    spec = make_spec(server.port, [template("classify", "/ok", method="POST",
                                            body={"file": "/nonexistent/image.jpg"})])
    with pytest.raises(DriverError, match=r"body file /nonexistent/image\.jpg: cannot read it") \
            as caught:
        run_load(driver, spec)
    assert caught.value.kind == KIND_CONFIG
