"""`coord run` with command templates on a real lab (``tpl``, one client): a mix of ``MGET``,
``EVAL``, a ``MULTI``/``EXEC`` block and a 1 MB random binary value, on a Zipf keyspace,
counted per command exactly as Redis's own ``INFO commandstats`` counted the calls; and a
template whose expected reply type is wrong counted as ``UNEXPECTED`` errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from coordinator.lab.api import LabSpec, LabStatus
from coordinator.results import load_results
from coordinator.results.model import Repetition
from tests.helpers import emptied_lab_redis, module_lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).parents[2]
NAME = "tpl"
SUBNET = "198.18.221.0/24"
RUN = ["--warmup", "0s", "--duration", "2s", "--repetitions", "1", "--no-baseline"]
MIX: list[dict[str, Any]] = [
    {"command": ["MGET", "{key}", "{key}", "{key}"], "weight": 4, "expect": "array"},
    {"command": ["EVAL", "return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, "n:{int:0:9}",
                 "{int:1:5}"], "weight": 2, "expect": "integer"},
    {"multi": [["HINCRBY", "h:{int:0:9}", "f", 1], ["EXPIRE", "h:{int:0:9}", 60]],
     "expect": "array"},
    {"command": ["SET", "blob:{int:0:3}", "{value:1048576:random}"], "weight": 0.2,
     "expect": "ok"},
]  # fmt: skip


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStatus]:
    yield from module_lab(LabSpec(name=NAME, clients=1, subnet=SUBNET),
                          tmp_path_factory.mktemp("tpl"))


@pytest.fixture
def server(lab: LabStatus) -> Iterator[redis.Redis]:
    yield from emptied_lab_redis(lab)


def inventory_with(lab: LabStatus, path: Path, builtin: dict[str, Any]) -> Path:
    inventory = yaml.safe_load(lab.inventory_path.read_text())
    inventory.setdefault("benchmark", {}).setdefault("builtin", {}).update(builtin)
    path.write_text(yaml.safe_dump(inventory))
    return path


def coord(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


def run_once(path: Path, tmp_path: Path, server: redis.Redis) -> Repetition:
    """``coord run`` of the inventory at ``path``, the server's command counts reset first;
    its one repetition."""
    server.config_resetstat()
    out = tmp_path / "results"
    result = coord("run", "-i", str(path), "--out", str(out), *RUN)
    assert result.returncode == 0, result.stderr
    (repetition,) = load_results(out / "results.json").repetitions
    return repetition


def calls(server: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = server.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_a_mix_of_mget_eval_multi_and_a_1mb_value_is_counted_as_redis_counts_it(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    path = inventory_with(lab, tmp_path / "mix.yaml", {
        "templates": MIX, "connections": 4, "pipeline": 4, "processes": 1, "keyspace": 100_000,
        "key_prefix": "user:", "distribution": {"kind": "zipf", "s": 1.0},
    })  # fmt: skip
    repetition = run_once(path, tmp_path, server)
    counted = calls(server)
    commands = {name: record.count for name, record in repetition.commands.items()}
    assert repetition.errors == {}, repetition.errors
    assert set(commands) == {"MGET", "EVAL", "MULTI", "SET"}
    assert all(count > 0 for count in commands.values()), commands
    assert commands["MGET"] == counted["mget"]
    assert commands["EVAL"] == counted["eval"]
    assert commands["MULTI"] == counted["multi"] == counted["exec"] == counted["hincrby"]
    assert counted["expire"] == counted["multi"]
    assert commands["SET"] == counted["set"]
    assert len(server.get("blob:0") or server.get("blob:1") or server.get("blob:2")
               or server.get("blob:3") or b"") == 1 << 20  # fmt: skip
    # every EVAL's INCRBY ran from the script, on one of the ten counters
    assert sum(int(server.get(f"n:{i}") or 0) for i in range(10)) >= commands["EVAL"]


def test_a_reply_of_another_type_than_expected_counts_as_unexpected(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    path = inventory_with(lab, tmp_path / "expect.yaml", {
        "templates": [{"command": ["GET", "{key}"], "expect": "string"},
                      {"command": ["INCR", "c"], "expect": "integer"}],
        "connections": 2, "pipeline": 2, "processes": 1, "keyspace": 10,
    })  # fmt: skip
    repetition = run_once(path, tmp_path, server)
    counted = calls(server)
    # no key exists: every GET answers nil, not a string
    assert repetition.errors.get("UNEXPECTED", 0) == counted["get"] > 0
    assert "GET" not in repetition.commands or repetition.commands["GET"].count == 0
    assert repetition.commands["INCR"].count == counted["incr"] > 0


def test_a_preload_command_fills_the_keyspace_with_what_the_templates_read(
    lab: LabStatus, tmp_path: Path, server: redis.Redis
) -> None:
    """Hashes preloaded with HSET, read with HGET: no WRONGTYPE (a SET preload's strings
    would make every HGET one), every HGET finds its field."""
    path = inventory_with(lab, tmp_path / "hashes.yaml", {
        "templates": [{"command": ["HGET", "{key}", "name"], "expect": "string"}],
        "preload": True,
        "preload_command": ["HSET", "{key}", "name", "{value:12}", "score", "{int:0:99}",
                            "self", "{key}"],
        "connections": 2, "pipeline": 4, "processes": 1, "keyspace": 3000,
        "key_prefix": "player:",
    })  # fmt: skip
    repetition = run_once(path, tmp_path, server)
    counted = calls(server)
    assert repetition.errors == {}, repetition.errors
    assert counted["hset"] == server.dbsize() == 3000
    assert repetition.commands["HGET"].count == counted["hget"] > 0
    assert server.type("player:2999") == b"hash"
    assert server.hget("player:17", "self") == b"player:17"
    assert len(server.hget("player:17", "name") or b"") == 12
    assert 0 <= int(server.hget("player:17", "score") or -1) <= 99
