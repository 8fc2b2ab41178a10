"""`coord data load fraud` against a real redis-server on loopback, with a password from a
file the inventory names (not a lab test: no root, no namespaces)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import yaml

from coordinator.usecases import fraud
from tests.conftest import RunCoord
from tests.helpers import loopback_redis

DEADLINE = 60.0
PASSWORD = "data-load-secret"


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    yield from loopback_redis(tmp_path_factory.mktemp("redis"), PASSWORD)


def test_the_reference_data_lands_in_redis_one_blob_per_customer(
    tmp_path: Path, redis_port: int, run_coord: RunCoord,
) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(f"{PASSWORD}\n")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({
        "version": 1, "name": "local",
        "hosts": [{"name": "server", "address": "127.0.0.1", "roles": ["server"]},
                  {"name": "client1", "address": "127.0.0.11", "roles": ["client"]}],
        "servers": [{"name": "redis", "host": "server", "port": redis_port,
                     "password_file": str(password_file)}],
    }))
    result = run_coord("data", "load", "fraud", "-i", str(inventory), "--customers", "25",
                       "--seed", "4")
    assert result.status == 0, result.stderr
    assert "loaded the reference data of 25 customers into redis" in result.stdout
    expected = fraud.reference_data(25, seed=4)
    with redis.Redis(port=redis_port, password=PASSWORD) as client:
        assert client.dbsize() == 25
        blob = client.get("reference:24")
    assert isinstance(blob, bytes)
    assert np.array_equal(np.frombuffer(blob, dtype="<f4"), expected[24])


def test_an_inventory_without_a_resp_server_is_one_line(tmp_path: Path,
                                                        run_coord: RunCoord) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({
        "version": 1, "name": "local",
        "hosts": [{"name": "server", "address": "127.0.0.1", "roles": ["server"]},
                  {"name": "client1", "address": "127.0.0.11", "roles": ["client"]}],
        "servers": [{"name": "web", "host": "server", "port": 8000, "kind": "http"}],
        "benchmark": {"driver": "http"},
    }))
    result = run_coord("data", "load", "fraud", "-i", str(inventory))
    assert result.status == 2
    assert result.stderr.strip() == ("servers: the inventory has no RESP server (kind: resp) "
                                     "to load the reference data into")
