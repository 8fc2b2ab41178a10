"""The memtier_benchmark command line coord builds, run for real against a loopback
redis-server with two --commands, read back by coord's parsers: the JSON totals per command
are the calls Redis counted (INFO commandstats), and each command has its whole-run histogram."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.drivers.memtier_command import command_line, parse_params
from agent.drivers.memtier_output import read_hdr_log, read_json_totals
from agent.drivers.spec import Target
from agent.drivers.tool_command import redacted
from tests.integration.test_builtin_driver import PASSWORD, RedisServer, redis_server

__all__ = ["redis_server"]

pytestmark = pytest.mark.skipif(
    shutil.which("memtier_benchmark") is None or shutil.which("redis-server") is None,
    reason="needs memtier_benchmark and redis-server on PATH",
)
TOOL_BOUND_S = 120
PARAMS: dict[str, Any] = {
    "threads": 2, "clients": 3, "pipeline": 2, "ratio": None,
    "commands": [
        {"command": "HSET h __key__ __data__", "ratio": 1, "key_pattern": "R"},
        {"command": "GET __key__", "ratio": 2, "key_pattern": "R"},
    ],
    "key_pattern": "R:R", "key_minimum": 1, "key_maximum": 500, "data_size": 8,
    "test_time": None, "requests": 300, "rate_limiting": None,
}  # fmt: skip


def calls(server: RedisServer) -> dict[str, int]:
    with server.client() as client:
        stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_two_commands_counts_equal_the_servers_calls(
    redis_server: Callable[..., RedisServer], tmp_path: Path
) -> None:
    server = redis_server(password=PASSWORD)
    target = Target(address="127.0.0.1", port=server.port, password=server.password)
    argv = command_line(parse_params(PARAMS), target, str(tmp_path / "run"),
                        str(tmp_path / "run.json"))
    assert "***" in redacted(argv) and PASSWORD not in redacted(argv)
    with server.client() as client:
        client.config_resetstat()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_BOUND_S,
                          check=False)
    assert done.returncode == 0, done.stderr
    totals = read_json_totals((tmp_path / "run.json").read_text())
    counted = calls(server)
    assert totals.count == 2 * 3 * 300 == counted["hset"] + counted["get"]
    assert {name: c.count for name, c in totals.commands.items()} == {
        "Hsets": counted["hset"], "Gets": counted["get"]}
    for command in ("HSET", "GET"):
        (entry,) = read_hdr_log((tmp_path / f"run_{command}_command_run_1.hgrm").read_text())
        assert entry.histogram.get_total_count() == counted[command.lower()]
