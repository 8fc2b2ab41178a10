"""The redis-benchmark command line of a load spec: every parameter mapped explicitly. Pure.

``params`` of a ``"driver": "redis-benchmark"`` spec (all required)::

    {"tests": ["set", "get"] | null,    -t, the tool's own tests...
     "command": ["HSET", "h", "__rand_int__", "v"] | null,   ...or one command (exactly one of
                                        the two; ``__rand_int__`` is replaced by the tool with a
                                        number below ``keyspace``, so it needs ``keyspace``)
     "clients": C,                      -c, connections of this host
     "threads": T,                      --threads, always given (the tool's default is 1)
     "pipeline": P,                     -P
     "value_size": B,                   -d
     "keyspace": K | null,              -r (null: every request uses the same key)
     "requests": N,                     -n, per run of the tool
     "precision": 3}                    --precision: the histogram's significant figures

The target gives ``-h``/``-p``, ``--user`` and ``-a`` (redis-benchmark 7 reads the password only
from its command line: not from ``REDISCLI_AUTH``, checked, see docs/drivers.md), and ``--tls``
with ``--cacert``, ``--cert``, ``--key``, ``--insecure``. ``-q`` and ``--csv`` are never given:
coord reads the full report (:mod:`agent.drivers.redis_benchmark_output`). Arguments go to the
tool as a list (``execve``), never through a shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from agent.drivers.errors import KIND_CONFIG, DriverError
from agent.drivers.spec import Fields, Target
from agent.drivers.tool_command import tls_options

BINARY: Final = "redis-benchmark"
#: redis-benchmark's limits (redis-benchmark.c: MAX_THREADS, MAX_LATENCY_PRECISION).
MAX_THREADS: Final = 500
MIN_PRECISION: Final = 1
MAX_PRECISION: Final = 4
RAND_PLACEHOLDER: Final = "__rand_int__"


@dataclass(frozen=True)
class RedisBenchmarkParams:
    tests: tuple[str, ...] | None
    command: tuple[str, ...] | None
    clients: int
    threads: int
    pipeline: int
    value_size: int
    keyspace: int | None
    requests: int
    precision: int


def parse_params(data: Mapping[str, Any]) -> RedisBenchmarkParams:
    """``params`` read strictly; DriverError("config") naming the field otherwise."""
    fields = Fields(dict(data), "spec.params")
    tests = _words(fields, "tests")
    command = _words(fields, "command")
    params = RedisBenchmarkParams(
        tests=tests,
        command=command,
        clients=fields.integer("clients", 1),
        threads=fields.integer("threads", 1, MAX_THREADS),
        pipeline=fields.integer("pipeline", 1),
        value_size=fields.integer("value_size", 1),
        keyspace=fields.optional_integer("keyspace", 1),
        requests=fields.integer("requests", 1),
        precision=fields.integer("precision", MIN_PRECISION, MAX_PRECISION),
    )
    fields.no_more()
    if (tests is None) == (command is None):
        raise DriverError(KIND_CONFIG, "spec.params needs exactly one of tests and command")
    if command and params.keyspace is None and any(RAND_PLACEHOLDER in w for w in command):
        raise DriverError(
            KIND_CONFIG, f"spec.params.command uses {RAND_PLACEHOLDER}, which needs a keyspace"
        )
    return params


def _words(fields: Fields, key: str) -> tuple[str, ...] | None:
    value = fields.get(key)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(word, str) and word for word in value)
    ):
        raise fields.problem(key, "must be a non-empty list of non-empty strings, or null")
    if key == "tests" and any("," in word for word in value):
        raise fields.problem(key, "names one test per item (no commas)")
    return tuple(value)


def command_line(params: RedisBenchmarkParams, target: Target) -> list[str]:
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
    argv = [BINARY, "-h", target.address, "-p", str(target.port)]
    if target.username is not None:
        argv += ["--user", target.username]
    if target.password is not None:
        argv += ["-a", target.password]
    argv += tls_options(target.tls, skip_verify="--insecure")
    argv += [
        "-c", str(params.clients),
        "--threads", str(params.threads),
        "-P", str(params.pipeline),
        "-d", str(params.value_size),
        "-n", str(params.requests),
        "--precision", str(params.precision),
    ]  # fmt: skip
    if params.keyspace is not None:
        argv += ["-r", str(params.keyspace)]
    if params.tests is not None:
        argv += ["-t", ",".join(params.tests)]
    if params.command is not None:
        argv += list(params.command)
    return argv

