"""The http driver's ``params``: their limits (declared once, imported by the inventory
schema), their parsing into request templates and the plan of load processes. Pure.

``params`` (every field required but ``seed``)::

    {"processes": null | P, "connections": C,   as the builtin driver's
     "keyspace": K,                              {rand_int} is below it
     "timeout_ns": T,                            a request unanswered this long: timeout error
     "rate": null | R,                           open loop, as the builtin driver's:
     "arrivals": "constant",                     optional, constant or poisson
     "base_path": "", "headers": {...},          the server's (inventory servers[].http)
     "requests": [{"name", "method", "path", "headers", "body", "weight",
                   "expect_status", "json_path"}, ...],
     "seed": null | S}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from agent.drivers.builtin_params import CONNECTIONS, PROCESSES, RATE, Limit, open_loop_fields
from agent.drivers.errors import KIND_CONFIG, DriverError
from agent.drivers.http_request import RequestTemplate, body_from_json
from agent.drivers.schedule import CONSTANT
from agent.drivers.spec import Fields

__all__ = ["CONNECTIONS", "KEYSPACE", "METHODS", "PROCESSES", "RATE", "TIMEOUT_NS", "WEIGHT",
           "HttpParams", "parse_params", "plan"]

KEYSPACE: Final = Limit(1, 10**12)
"""``{rand_int}`` draws below this."""
TIMEOUT_NS: Final = Limit(1_000_000, 600 * 1_000_000_000)
"""A request's longest wait for its response (1 ms to 10 min)."""
WEIGHT: Final = Limit(1, 1_000_000)
"""A template's share of requests is its weight over the sum of weights."""
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""HEAD is left out: its response has headers that announce a body it does not carry."""


@dataclass(frozen=True)
class HttpParams:
    processes: int | None
    connections: int
    keyspace: int
    timeout_ns: int
    base_path: str
    headers: Mapping[str, str]
    requests: tuple[RequestTemplate, ...]
    seed: int | None = None
    rate: float | None = None  # open loop (requests/s for the host); None: closed loop
    arrivals: str = CONSTANT  # the open loop's schedule: constant or poisson


def _strings(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise DriverError(KIND_CONFIG, f"{where} must map header names to strings")
    for name, header in value.items():
        if not name or any(c in name for c in " :\r\n") or any(c in header for c in "\r\n"):
            raise DriverError(KIND_CONFIG, f"{where}: {name!r} is not a valid header")
    return dict(value)


def _template(data: object, where: str) -> RequestTemplate:
    fields = Fields(data, where)
    method = fields.text("method")
    if method not in METHODS:
        raise fields.problem("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    path = fields.text("path")
    if not path.startswith("/") or any(c in path for c in " \r\n"):
        raise fields.problem("path", f"must start with / and hold no space, got {path!r}")
    body = None
    if fields.get("body") is not None:
        try:
            body = body_from_json(fields.object("body"))
        except ValueError as exc:
            raise fields.problem("body", str(exc)) from None
    expect = fields.get("expect_status")
    if expect is not None:
        expect = fields.integer("expect_status", 100, 599)
    template = RequestTemplate(
        name=fields.text("name"),
        method=method,
        path=path,
        headers=_strings(fields.get("headers"), f"{where}.headers"),
        body=body,
        weight=fields.integer("weight", WEIGHT.minimum, WEIGHT.maximum),
        expect_status=expect,
        json_path=fields.optional_text("json_path"),
    )
    fields.no_more()
    return template


def parse_params(params: dict[str, Any]) -> HttpParams:
    """The http driver's ``params``; DriverError("config", ...) for anything wrong."""
    fields = Fields(params, "spec.params")
    processes = None
    if fields.get("processes") is not None:
        processes = fields.integer("processes", PROCESSES.minimum, PROCESSES.maximum)
    rate, arrivals = open_loop_fields(fields)
    raw = fields.get("requests")
    if not isinstance(raw, list) or not raw:
        raise fields.problem("requests", "must be a non-empty list of request templates")
    requests = tuple(_template(item, f"spec.params.requests[{i}]") for i, item in enumerate(raw))
    names = [template.name for template in requests]
    if len(set(names)) != len(names):
        raise fields.problem("requests", f"names must be unique, got {names}")
    base_path = fields.get("base_path")
    if not isinstance(base_path, str) or (base_path and not base_path.startswith("/")):
        raise fields.problem("base_path", f"must be empty or start with /, got {base_path!r}")
    parsed = HttpParams(
        processes=processes,
        connections=fields.integer("connections", CONNECTIONS.minimum, CONNECTIONS.maximum),
        keyspace=fields.integer("keyspace", KEYSPACE.minimum, KEYSPACE.maximum),
        timeout_ns=fields.integer("timeout_ns", TIMEOUT_NS.minimum, TIMEOUT_NS.maximum),
        base_path=base_path,
        headers=_strings(fields.get("headers"), "spec.params.headers"),
        requests=requests,
        seed=fields.optional_integer("seed", minimum=0) if fields.has("seed") else None,
        rate=rate,
        arrivals=arrivals,
    )
    fields.no_more()
    return parsed


def plan(params: HttpParams, cores: int) -> list[int]:
    """Connections of each load process: one process per core (or ``processes``), at most
    one per connection, connections spread evenly."""
    processes = min(params.processes or cores, params.connections)
    base, extra = divmod(params.connections, processes)
    return [base + (1 if index < extra else 0) for index in range(processes)]
