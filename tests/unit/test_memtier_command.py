"""memtier_benchmark's command line from a spec's params: every parameter mapped, strictness."""

from __future__ import annotations

from typing import Any

import pytest

from agent.drivers.errors import DriverError
from agent.drivers.memtier_command import command_line, parse_params
from agent.drivers.spec import Target
from agent.drivers.tool_command import redacted

PARAMS: dict[str, Any] = {
    "threads": 4, "clients": 50, "pipeline": 1, "ratio": "1:10", "commands": None,
    "key_pattern": "R:R", "key_minimum": 1, "key_maximum": 100000, "data_size": 32,
    "test_time": 10, "requests": None, "rate_limiting": None,
}  # fmt: skip
SECRET = "pw"
TARGET = Target(address="198.18.0.10", port=6379, password=SECRET, username="u")


def test_every_parameter_is_on_the_command_line() -> None:
    argv = command_line(parse_params({**PARAMS, "rate_limiting": 100}), TARGET, "P", "J")
    assert argv == [
        "memtier_benchmark", "-s", "198.18.0.10", "-p", "6379", "-a", "u:pw",
        "--threads", "4", "--clients", "50", "--pipeline", "1", "--key-minimum", "1",
        "--key-maximum", "100000", "--data-size", "32", "--ratio", "1:10", "--key-pattern",
        "R:R", "--test-time", "10", "--rate-limiting", "100", "--hdr-file-prefix", "P",
        "--json-out-file", "J", "--hide-histogram",
    ]  # fmt: skip
    assert "pw" not in " ".join(redacted(argv))


def test_commands_carry_their_ratio_and_key_pattern_and_no_global_key_pattern() -> None:
    params = parse_params({**PARAMS, "ratio": None, "commands": [
        {"command": "AI.MODELEXECUTE m INPUTS 1 __key__", "ratio": 3, "key_pattern": "G"}]})
    argv = command_line(params, Target(address="h", port=1), "P", "J")
    assert "--command=AI.MODELEXECUTE m INPUTS 1 __key__" in argv
    assert "--command-ratio=3" in argv and "--command-key-pattern=G" in argv
    assert "--key-pattern" not in argv and "--ratio" not in argv and "-a" not in argv


@pytest.mark.parametrize(("change", "problem"), [
    ({"ratio": None}, "exactly one of ratio and commands"),
    ({"requests": 5}, "exactly one of test_time and requests"),
    ({"ratio": "1-10"}, "spec.params.ratio must be SET:GET"),
    ({"key_pattern": "X:R"}, "spec.params.key_pattern must be X:Y"),
    ({"key_minimum": 7, "key_maximum": 3}, "key_minimum must not be above key_maximum"),
    ({"threads": 0}, "spec.params.threads must be at least 1"),
    ({"extra": 1}, "unknown field(s): extra"),
])
def test_bad_params_name_the_field(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(DriverError) as caught:
        parse_params({**PARAMS, **change})
    assert problem in caught.value.message
