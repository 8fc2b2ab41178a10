"""redis-benchmark's command line from a spec (agent/drivers/redis_benchmark_command.py): every
parameter mapped explicitly, ``--threads`` always given, strict params."""

from __future__ import annotations

from typing import Any

import pytest

from agent.drivers.errors import DriverError
from agent.drivers.redis_benchmark_command import command_line, parse_params
from agent.drivers.spec import Target
from agent.drivers.tool_command import redacted

PASSWORD = "pw"
TARGET = Target(address="198.18.206.10", port=6379)


def params(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tests": ["set", "get"], "command": None, "clients": 50, "threads": 2, "pipeline": 4,
        "value_size": 32, "keyspace": 1000, "requests": 100_000, "precision": 3,
    }  # fmt: skip
    base.update(changes)
    return base


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_every_parameter_is_on_the_command_line() -> None:
    argv = command_line(parse_params(params()), TARGET)
    assert argv[0] == "redis-benchmark"
    expected = {
        "-h": "198.18.206.10", "-p": "6379", "-c": "50", "--threads": "2", "-P": "4", "-d": "32",
        "-n": "100000", "--precision": "3", "-r": "1000", "-t": "set,get",
    }  # fmt: skip
    assert {name: option(argv, name) for name in expected} == expected
    assert "-q" not in argv and "--csv" not in argv and "-a" not in argv


def test_threads_are_given_even_when_one() -> None:
    argv = command_line(parse_params(params(threads=1)), TARGET)
    assert option(argv, "--threads") == "1"


def test_an_arbitrary_command_goes_last_word_by_word() -> None:
    command = ["EVAL", "return redis.call('HSET', KEYS[1], ARGV[1], 1)", "1", "h", "__rand_int__"]
    argv = command_line(parse_params(params(tests=None, command=command)), TARGET)
    assert argv[-len(command) :] == command
    assert "-t" not in argv


def test_auth_and_tls() -> None:
    target = Target(
        address="10.0.0.1", port=6380, password=PASSWORD, username="bench",
        tls={"ca_file": "/ca.pem", "cert_file": "/c.pem", "key_file": "/k.pem", "verify": False},
    )  # fmt: skip
    argv = command_line(parse_params(params()), target)
    assert (option(argv, "--user"), option(argv, "-a")) == ("bench", "pw")
    assert (option(argv, "--cacert"), option(argv, "--cert"), option(argv, "--key")) == (
        "/ca.pem", "/c.pem", "/k.pem",
    )  # fmt: skip
    assert "--tls" in argv and "--insecure" in argv
    assert "pw" not in redacted(argv)


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"tests": None}, "exactly one of tests and command"),
     ({"command": ["PING"]}, "exactly one of tests and command"),
     ({"tests": None, "command": ["LPUSH", "l", "__rand_int__"], "keyspace": None}, "keyspace"),
     ({"tests": ["set,get"]}, "one test per item"),
     ({"threads": 501}, "threads must be at most 500"),
     ({"precision": 5}, "precision must be at most 4"),
     ({"clients": 0}, "clients must be at least 1"),
     ({"extra": 1}, "unknown field(s): extra"),
     ({"command": [], "tests": None}, "non-empty list")],
)  # fmt: skip
def test_bad_params_are_one_config_error_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(DriverError) as caught:
        parse_params(params(**changes))
    assert caught.value.kind == "config"
    assert message in caught.value.message


def test_a_load_source_address_is_refused() -> None:
    target = Target(address="10.0.0.1", port=6379, source_address="10.0.0.2")
    with pytest.raises(DriverError, match="load_source_address"):
        command_line(parse_params(params()), target)
