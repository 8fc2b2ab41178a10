"""The memtier_benchmark command line of a load spec: every parameter mapped explicitly. Pure.

``params`` of a ``"driver": "memtier"`` spec (all required)::

    {"threads": T,                       --threads
     "clients": C,                       --clients, per thread (T x C connections per host)
     "pipeline": P,                      --pipeline
     "ratio": "1:10" | null,             --ratio SET:GET (null with commands)
     "commands": [{"command": "HSET h __key__ __data__", "ratio": 1, "key_pattern": "R"}]
                 | null,                 --command, each with --command-ratio and
                                         --command-key-pattern (R random, S sequential, G
                                         gaussian, P parallel); __key__ and __data__ are
                                         memtier's placeholders
     "key_pattern": "R:R",               --key-pattern SET:GET (with ratio only: memtier
                                         refuses it with --command)
     "key_minimum": 1, "key_maximum": K, --key-minimum (at least 1) / --key-maximum
     "data_size": B,                     --data-size
     "test_time": S | null,              --test-time (seconds) ...
     "requests": N | null,               ... or --requests per connection (exactly one)
     "rate_limiting": R | null}          --rate-limiting, requests/s per connection

The target gives ``-s``/``-p``, ``-a`` (``user:password`` with a user: memtier reads the
credentials only from its command line) and ``--tls`` with ``--cacert``, ``--cert``, ``--key``,
``--tls-skip-verify``. coord always asks for ``--hdr-file-prefix`` and ``--json-out-file`` (in
a directory of its own) and ``--hide-histogram``. Arguments go to the tool as a list
(``execve``), never through a shell; memtier splits a ``--command`` string on spaces itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from agent.drivers.errors import KIND_CONFIG, DriverError
from agent.drivers.spec import Fields, Target
from agent.drivers.tool_command import tls_options

BINARY: Final = "memtier_benchmark"
KEY_PATTERNS: Final = frozenset("RSGP")
_RATIO: Final = re.compile(r"^\d+:\d+$")
_KEY_PATTERN: Final = re.compile(r"^[RSGP]:[RSGP]$")


@dataclass(frozen=True)
class MemtierCommand:
    command: str
    ratio: int
    key_pattern: str


@dataclass(frozen=True)
class MemtierParams:
    threads: int
    clients: int
    pipeline: int
    ratio: str | None
    commands: tuple[MemtierCommand, ...] | None
    key_pattern: str
    key_minimum: int
    key_maximum: int
    data_size: int
    test_time: int | None
    requests: int | None
    rate_limiting: int | None

    @property
    def connections(self) -> int:
        return self.threads * self.clients


def parse_params(data: Mapping[str, Any]) -> MemtierParams:
    """``params`` read strictly; DriverError("config") naming the field otherwise."""
    fields = Fields(dict(data), "spec.params")
    ratio = fields.optional_text("ratio")
    key_pattern = fields.text("key_pattern")
    params = MemtierParams(
        threads=fields.integer("threads", 1),
        clients=fields.integer("clients", 1),
        pipeline=fields.integer("pipeline", 1),
        ratio=ratio,
        commands=_commands(fields),
        key_pattern=key_pattern,
        key_minimum=fields.integer("key_minimum", 1),
        key_maximum=fields.integer("key_maximum", 1),
        data_size=fields.integer("data_size", 1),
        test_time=fields.optional_integer("test_time", 1),
        requests=fields.optional_integer("requests", 1),
        rate_limiting=fields.optional_integer("rate_limiting", 1),
    )
    fields.no_more()
    if ratio is not None and not _RATIO.match(ratio):
        raise fields.problem("ratio", f"must be SET:GET such as 1:10, got {ratio!r}")
    if not _KEY_PATTERN.match(key_pattern):
        raise fields.problem(
            "key_pattern", f"must be X:Y with X, Y in R S G P, got {key_pattern!r}"
        )
    if (params.ratio is None) == (params.commands is None):
        raise DriverError(KIND_CONFIG, "spec.params needs exactly one of ratio and commands")
    if (params.test_time is None) == (params.requests is None):
        raise DriverError(KIND_CONFIG, "spec.params needs exactly one of test_time and requests")
    if params.key_minimum > params.key_maximum:
        raise fields.problem("key_minimum", "must not be above key_maximum")
    return params


def _commands(fields: Fields) -> tuple[MemtierCommand, ...] | None:
    value = fields.get("commands")
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise fields.problem("commands", "must be a non-empty list or null")
    commands = []
    for index, item in enumerate(value):
        entry = Fields(item, f"spec.params.commands.{index}")
        command = MemtierCommand(
            command=entry.text("command"),
            ratio=entry.integer("ratio", 1),
            key_pattern=entry.text("key_pattern"),
        )
        entry.no_more()
        if command.key_pattern not in KEY_PATTERNS:
            raise entry.problem("key_pattern", f"must be one of R S G P, got "
                                f"{command.key_pattern!r}")
        commands.append(command)
    return tuple(commands)


def command_line(params: MemtierParams, target: Target, hdr_prefix: str,
                 json_file: str) -> list[str]:
    """The tool's argv (``argv[0]`` is :data:`BINARY`, found on PATH by the caller)."""
    if target.source_address is not None:
        raise DriverError(
            KIND_CONFIG,
            f"{BINARY} cannot choose the address its load leaves from "
            f"(load_source_address {target.source_address})",
        )
    if target.builtin_only():
        raise DriverError(
            KIND_CONFIG,
            f"servers[].{', '.join(target.builtin_only())}: only the builtin driver "
            f"implements it, not {BINARY}",
        )
    argv = [BINARY, "-s", target.address, "-p", str(target.port)]
    if target.password is not None:
        credentials = target.password
        if target.username is not None:
            credentials = f"{target.username}:{target.password}"
        argv += ["-a", credentials]
    argv += tls_options(target.tls, skip_verify="--tls-skip-verify")
    argv += [
        "--threads", str(params.threads),
        "--clients", str(params.clients),
        "--pipeline", str(params.pipeline),
        "--key-minimum", str(params.key_minimum),
        "--key-maximum", str(params.key_maximum),
        "--data-size", str(params.data_size),
    ]  # fmt: skip
    if params.ratio is not None:  # memtier refuses --key-pattern with --command
        argv += ["--ratio", params.ratio, "--key-pattern", params.key_pattern]
    for command in params.commands or ():
        argv += [f"--command={command.command}", f"--command-ratio={command.ratio}",
                 f"--command-key-pattern={command.key_pattern}"]
    if params.test_time is not None:
        argv += ["--test-time", str(params.test_time)]
    if params.requests is not None:
        argv += ["--requests", str(params.requests)]
    if params.rate_limiting is not None:
        argv += ["--rate-limiting", str(params.rate_limiting)]
    argv += ["--hdr-file-prefix", hdr_prefix, "--json-out-file", json_file, "--hide-histogram"]
    return argv

