"""The inventory: one YAML file that says which hosts take part in a benchmark and how.

The pydantic models below are the schema and the source of ``docs/inventory.md``: every field,
its type and its default live here and nowhere else. Models are strict (no silent coercion of
``"22"`` into ``22``) and forbid unknown keys, so a typo is an error rather than a default.
The field types are in :mod:`coordinator.inventory.fields`. Checks that span several fields
(references between sections, duplicate names, roles) live in
:func:`coordinator.inventory.checks.check_references`, which returns problems located by path
instead of raising on the first one. Loading and error formatting are in
:mod:`coordinator.inventory.loader`.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from agent.drivers import builtin_params, http_params
from agent.drivers.http_request import body_from_json
from agent.drivers.keyspace import Distribution, distribution_problem
from agent.drivers.templates import (
    EXPECT,
    MAX_TEMPLATES,
    TemplateError,
    parse_preload_command,
    parse_template,
)
from agent.protocol import HEARTBEAT_INTERVAL
from coordinator.core.durations import format_duration
from coordinator.inventory.fields import (
    Address,
    Duration,
    IPAddress,
    Name,
    Port,
    PositiveDuration,
    Role,
    whole_seconds,
    within,
)

MIN_INTERVAL_S = 0.010
"""Shortest sampling interval: every interval costs each load process a histogram snapshot and
a message, and the live view asks for progress every 0.5 s."""
MAX_INTERVAL_S = 3600.0
"""Longest sampling interval the agents accept (``agent.drivers.spec.MAX_INTERVAL_S``)."""
MAX_INTERVALS = 100_000
"""Most intervals (warm-up and measure) in one repetition: agents keep every interval's
histograms until the repetition's report is collected."""
MAX_DRAIN_S = 600.0
"""Longest end-of-phase drain (``agent.drivers.spec.MAX_DRAIN_NS``)."""
MIN_WATCHDOG_S = 1.5 * HEARTBEAT_INTERVAL
"""Shortest agent watchdog: coord heartbeats every 2 s, and the agent must not give up between
two heartbeats."""



class Model(BaseModel):
    """Base of every inventory model: strict types, unknown keys refused, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class SSHDefaults(Model):
    """SSH settings shared by every host; a host's own field overrides the default."""

    user: str | None = Field(None, description="login user; default: the operator's user name")
    key_file: str | None = Field(
        None, description="private key file; default: the SSH agent and ~/.ssh/id_*"
    )
    known_hosts: str = Field(
        "~/.ssh/known_hosts", description="known_hosts file that host keys are checked against"
    )
    connect_timeout: Annotated[Duration, AfterValidator(within(1.0))] = Field(
        10.0, description="how long to wait for a host's SSH handshake (at least 1s)"
    )
    host_key_policy: Literal["strict", "accept-new"] = Field(
        "strict",
        description="strict: refuse unknown or changed host keys; accept-new: record unknown "
        "keys in known_hosts (changed keys are always refused)",
    )


class Host(Model):
    """One machine coord deploys an agent to."""

    name: Name = Field(description="unique name used everywhere else in the inventory")
    address: Address = Field(description="IP address or DNS name coord connects to")
    port: Port = Field(22, description="SSH port")
    user: str | None = Field(None, description="login user; default: ssh.user")
    key_file: str | None = Field(None, description="private key; default: ssh.key_file")
    python: str = Field("/usr/bin/python3", description="Python interpreter (>= 3.10) on the host")
    roles: list[Role] = Field(min_length=1, description="client (runs load), server (runs target)")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="free-form metadata (instance type, zone...) copied into the results",
    )
    load_source_address: IPAddress | None = Field(
        None,
        description="client hosts: local address the load's connections leave from (e.g. the "
        "private network's); must be one of the host's addresses; default: the kernel's choice",
    )
    shares_machine: bool = Field(
        False,
        description="this host has the same address as another host and is knowingly the same "
        "machine (both must say so); the results are marked hosts-share-a-machine",
    )
    tool_path: str | None = Field(
        None, min_length=1,
        description="PATH (directories separated by ':') where the agent looks for the tools "
        "it runs (netperf, netserver); default: the PATH of its SSH session",
    )


class TLS(Model):
    """TLS settings for a target server."""

    ca_file: str | None = Field(None, description="CA bundle used to verify the server")
    cert_file: str | None = Field(None, description="client certificate, for mutual TLS")
    key_file: str | None = Field(None, description="client private key, for mutual TLS")
    server_name: str | None = Field(
        None, min_length=1,
        description="name sent as SNI and checked against the server's certificate; default: "
        "the server's address",
    )
    verify: bool = Field(True, description="verify the server's certificate")


class HttpServer(Model):
    """What an HTTP endpoint adds to a server entry (``kind: http``)."""

    base_path: str = Field(
        "", pattern=r"^(/[^\s]*)?$",
        description="prefix of every request template's path, e.g. /v1; default: none")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="headers sent with every request (a template's own override them)")


class Server(Model):
    """An endpoint under test (Redis/RESP or HTTP), running on one of the inventory's hosts."""

    name: Name = Field(description="unique name of this endpoint")
    kind: Literal["resp", "http"] = Field(
        "resp", description="resp: a Redis/RESP server; http: an HTTP/1.1 server (the http "
        "driver's target; port, address and tls as for resp)")
    http: HttpServer = Field(
        default_factory=HttpServer, description="kind http: base path and common headers")
    host: str = Field(description="name of the host (in hosts) that runs the server")
    port: Port = Field(6379, description="TCP port of the server")
    address: Address | None = Field(
        None,
        description="address the load connects to (e.g. the host's private address when SSH "
        "goes to a public one); default: the address of its host",
    )
    password: str | None = Field(
        None, description="AUTH password, written here (see password_file, password_env)"
    )
    password_file: str | None = Field(
        None,
        min_length=1,
        description="file holding the AUTH password (one line; a trailing newline is dropped), "
        "read by coord at run time: the secret stays out of the inventory and command lines",
    )
    password_env: str | None = Field(
        None,
        min_length=1,
        description="environment variable holding the AUTH password, read by coord at run time",
    )
    username: str | None = Field(None, description="ACL user name (Redis 6+)")
    tls: TLS | None = Field(None, description="connect with TLS; omit for plain TCP")
    db: int = Field(0, ge=0, description="database every connection SELECTs (the builtin driver)")
    protocol: Literal[2, 3] = Field(
        2, description="RESP version of the builtin driver's connections: 3 sends HELLO 3"
    )
    cluster: bool = Field(
        False, description="a Redis Cluster: host and port name one node; the builtin driver "
        "discovers the others and routes each request to its key's slot",
    )


Word = str | int | float


class CommandTemplate(Model):
    """One command template of the builtin driver (docs/drivers.md, "Command templates")."""

    command: list[Word] | None = Field(
        None, min_length=1, description="the command's words; placeholders {key}, {value}, "
        "{value:N}, {value:N:random}, {file:PATH}, {int:LO:HI}, {float:LO:HI}, {seq}, "
        "{tensor:DTYPE:SHAPE}",
    )
    multi: list[list[Word]] | None = Field(
        None, min_length=1, description="instead of command: the commands of a MULTI/EXEC block"
    )
    weight: float = Field(1.0, ge=0, description="share of requests: weight / sum of weights")
    name: str | None = Field(
        None, description="the command its latencies are recorded under; default: the first "
        "word in upper case (MULTI for a block)",
    )
    expect: Literal[tuple(EXPECT)] | None = Field(  # type: ignore[valid-type]
        None, description="the reply type expected; another type counts as an UNEXPECTED error"
    )

    @model_validator(mode="after")
    def _usable(self) -> CommandTemplate:
        try:
            parse_template(self.model_dump(exclude_none=True), "template")
        except TemplateError as exc:
            raise ValueError(str(exc).removeprefix("template").lstrip(".: ")) from None
        return self


class KeyDistribution(Model):
    """Which key each request uses (docs/drivers.md, "Keyspace")."""

    kind: Literal["uniform", "sequential", "zipf", "gaussian", "hotset"] = Field(
        "uniform", description="uniform, sequential, zipf (s), gaussian (mean, sd), hotset "
        "(hot_requests, hot_keys)",
    )
    s: float | None = Field(None, description="zipf: the exponent (key n drawn ∝ 1/(n+1)^s)")
    mean: float | None = Field(None, description="gaussian: the mean, a fraction of the keyspace")
    sd: float | None = Field(None, description="gaussian: the standard deviation, a fraction of "
                             "the keyspace")  # fmt: skip
    hot_requests: float | None = Field(None, description="hotset: the share of requests to the "
                                       "hot keys (0.9: 90 %)")  # fmt: skip
    hot_keys: float | None = Field(None, description="hotset: the share of keys that are hot "
                                   "(the first ones)")  # fmt: skip

    @model_validator(mode="after")
    def _usable(self) -> KeyDistribution:
        problem = distribution_problem(Distribution(**self.model_dump(exclude_none=True)))
        if problem is not None:
            raise ValueError(problem)
        return self


class BuiltinDriver(Model):
    """Parameters of coord's own Redis load generator."""

    # Limits: the agent's own (agent/drivers/builtin_params.py), declared there once.
    processes: int | None = Field(
        None, ge=builtin_params.PROCESSES.minimum, le=builtin_params.PROCESSES.maximum,
        description="worker processes per client host; default: its cores",
    )
    connections: int = Field(
        50, ge=builtin_params.CONNECTIONS.minimum, le=builtin_params.CONNECTIONS.maximum,
        description="connections per client host, spread over processes",
    )
    pipeline: int = Field(
        1, ge=builtin_params.PIPELINE.minimum, le=builtin_params.PIPELINE.maximum,
        description="requests in flight per connection",
    )
    set_ratio: float = Field(
        0.1, ge=builtin_params.SET_RATIO.minimum, le=builtin_params.SET_RATIO.maximum,
        description="fraction of requests that are SET; the rest are GET",
    )
    keyspace: int = Field(
        100_000, ge=builtin_params.KEYSPACE.minimum, le=builtin_params.KEYSPACE.maximum,
        description="number of distinct keys",
    )
    value_size: int = Field(
        32, ge=builtin_params.VALUE_SIZE.minimum, le=builtin_params.VALUE_SIZE.maximum,
        description="bytes per SET value",
    )
    rate: float | None = Field(
        None, ge=builtin_params.RATE.minimum, le=builtin_params.RATE.maximum,
        description="open loop: target requests/s per client host, spread evenly over its "
        "connections, latency counted from each request's intended send time "
        "(docs/drivers.md); omit for closed loop",
    )
    arrivals: Literal["constant", "poisson"] = Field(
        "constant", description="open loop: intended send times evenly spaced, or Poisson "
        "arrivals of the same mean rate",
    )
    preload: bool = Field(
        False, description="SET every key of the keyspace before the first repetition"
    )
    preload_command: list[Word] | None = Field(
        None, min_length=1, description="with preload: the command that fills each key instead "
        "of SET {key} {value} (HSET {key} name {value:16}, ZADD {key} {int:0:100} m...); "
        "{key} is the key filled, the other placeholders as in templates",
    )
    timeout: Annotated[Duration, AfterValidator(within(
        builtin_params.REPLY_TIMEOUT_S.minimum, builtin_params.REPLY_TIMEOUT_S.maximum))] = Field(
        builtin_params.DEFAULT_REPLY_TIMEOUT_S, description="a connection awaiting replies that "
        "gets none for this long: its unanswered requests count as timeout errors and it is "
        "replaced by a new connection (docs/drivers.md); 1ms to 10min",
    )
    busy_poll_usec: int = Field(
        0, ge=0, le=round(builtin_params.BUSY_POLL_S.maximum * 1e6),
        description="closed loop: when no reply is ready, a load process polls its "
        "connections without sleeping for up to this many µs before it sleeps, so it sees a "
        "reply as it lands rather than after a wake-up; the polling's CPU is measured and "
        "left out of the client-bound verdicts (docs/drivers.md); 0: off",
    )
    templates: list[CommandTemplate] | None = Field(
        None, min_length=1, max_length=MAX_TEMPLATES, description="a weighted mix of command "
        "templates instead of the SET/GET mix of set_ratio",
    )
    setup: list[list[Word]] = Field(
        [], description="commands sent once per load process before the load (SCRIPT LOAD, "
        "FUNCTION LOAD REPLACE...)",
    )
    key_prefix: str = Field("key:", max_length=256, description="keys are key_prefix + n, n in "
                            "0..keyspace-1")  # fmt: skip
    distribution: KeyDistribution = Field(
        default_factory=KeyDistribution, description="which key each request uses"
    )

    @model_validator(mode="after")
    def _ratio_or_templates(self) -> BuiltinDriver:
        if self.templates is not None and "set_ratio" in self.model_fields_set:
            raise ValueError("give set_ratio or templates, not both (a template has a weight)")
        return self

    @model_validator(mode="after")
    def _preload_command_usable(self) -> BuiltinDriver:
        if self.preload_command is None:
            return self
        if not self.preload:
            raise ValueError("preload_command is the preload's command: set preload: true")
        try:
            parse_preload_command(list(self.preload_command), "preload_command")
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_validator(mode="after")
    def _busy_poll_closed_loop(self) -> BuiltinDriver:
        if self.busy_poll_usec and self.rate is not None:
            raise ValueError("busy_poll_usec applies to the closed loop only, not with rate "
                             "(the open loop already polls towards each send time)")
        return self


class HttpBody(Model):
    """A request body: exactly one of text, json, base64, tensor, file."""

    text: str | None = Field(None, description="a text body ({seq}, {rand_int}, "
                             "{tensor:DTYPE:SHAPE[:random]} expanded)")
    json_value: object = Field(
        None, alias="json", description="a JSON body, any JSON value ({seq}, {rand_int} "
        "expanded in its serialised text; a string value \"{tensor:DTYPE:SHAPE}\" or "
        "\"{tensor:DTYPE:SHAPE:random}\" becomes a JSON array of that shape, docs/drivers.md)")
    base64: str | None = Field(None, description="a binary body, base64-encoded (sent as is)")
    tensor: str | None = Field(None, description="a binary body: a tensor's raw little-endian "
                               "bytes, DTYPE:SHAPE, e.g. float32:1x3x224x224 (drawn once)")
    file: str | None = Field(None, min_length=1, description="a binary body: the bytes of this "
                             "file on each client host (read once, when the load starts)")

    @model_validator(mode="after")
    def _exactly_one(self) -> HttpBody:
        given = [name for name, value in (("text", self.text), ("json", self.json_value),
                                          ("base64", self.base64), ("tensor", self.tensor),
                                          ("file", self.file)) if value is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of text, json, base64, tensor, file, got "
                             f"{given or 'none'}")
        try:
            body_from_json(self.to_spec())
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self

    def to_spec(self) -> dict[str, object]:
        for name in ("text", "base64", "tensor", "file"):
            if getattr(self, name) is not None:
                return {name: getattr(self, name)}
        return {"json": self.json_value}


class HttpRequest(Model):
    """One request template of the http driver (docs/drivers.md)."""

    name: Name = Field(description="the template's name: its histogram's, in the results")
    # The agent's http_params.METHODS (HEAD is not among them: see there).
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = Field(
        "GET", description="HTTP method")
    path: str = Field(pattern=r"^/[^\s]*$", description="path and query ({seq}, {rand_int} "
                      "expanded), after the server's base_path")
    headers: dict[str, str] = Field(default_factory=dict, description="extra headers")
    body: HttpBody | None = Field(None, description="request body; omit for none")
    weight: int = Field(
        1, ge=http_params.WEIGHT.minimum, le=http_params.WEIGHT.maximum,
        description="share of requests: weight over the sum of the templates' weights")
    expect_status: int | None = Field(
        None, ge=100, le=599, description="the status a success has; default: any 2xx")
    json_path: str | None = Field(
        None, description="a path the JSON response must hold (keys and list indices "
        "separated by dots, e.g. outputs.0.data); a response without it is a check error")


class HttpDriver(Model):
    """Parameters of coord's HTTP/1.1 load generator (docs/drivers.md)."""

    processes: int | None = Field(
        None, ge=http_params.PROCESSES.minimum, le=http_params.PROCESSES.maximum,
        description="load processes per client host; default: its cores",
    )
    connections: int = Field(
        50, ge=http_params.CONNECTIONS.minimum, le=http_params.CONNECTIONS.maximum,
        description="keep-alive connections per client host, one request in flight on each",
    )
    keyspace: int = Field(
        100_000, ge=http_params.KEYSPACE.minimum, le=http_params.KEYSPACE.maximum,
        description="{rand_int} is a uniform integer below this",
    )
    timeout: PositiveDuration = Field(
        10.0, description="a request unanswered this long is a timeout error (its connection "
        "is replaced)")
    rate: float | None = Field(
        None, ge=http_params.RATE.minimum, le=http_params.RATE.maximum,
        description="open loop: target requests/s per client host, as benchmark.builtin.rate "
        "(docs/drivers.md); omit for closed loop",
    )
    arrivals: Literal["constant", "poisson"] = Field(
        "constant", description="open loop: intended send times evenly spaced, or Poisson "
        "arrivals of the same mean rate",
    )
    requests: list[HttpRequest] = Field(
        default_factory=lambda: [HttpRequest(name="get", path="/")],
        min_length=1, description="request templates, chosen by weight")


class RedisBenchmarkDriver(Model):
    """Parameters passed to ``redis-benchmark`` on each client host (docs/drivers.md)."""

    tests: list[str] = Field(
        ["set", "get"], min_length=1, description="-t: the tool's tests to run (not with command)"
    )
    command: list[str] | None = Field(
        None, min_length=1, description="an arbitrary command and its arguments, one word per "
        "item, instead of tests (__rand_int__: a random number below keyspace)",
    )
    clients: int = Field(50, ge=1, le=100_000, description="-c: connections per client host")
    pipeline: int = Field(1, ge=1, le=10_000, description="-P: pipelined requests")
    threads: int = Field(
        1, ge=1, le=500, description="--threads: always passed (redis-benchmark defaults to 1)"
    )
    value_size: int = Field(3, ge=1, le=512 * 1024 * 1024, description="-d: value size in bytes")
    keyspace: int | None = Field(
        100_000, ge=1, le=10**10, description="-r: random keys (null: one key)"
    )
    requests: int | None = Field(
        None, ge=1, description="-n per client host and repetition; omit to size it from a "
        "calibration run so the run lasts about benchmark.duration",
    )
    precision: int = Field(3, ge=1, le=4, description="--precision: the tool's histogram's "
                           "significant figures")

    @model_validator(mode="after")
    def _tests_or_command(self) -> RedisBenchmarkDriver:
        if self.command is not None and "tests" in self.model_fields_set:
            raise ValueError("give tests or command, not both")
        return self


class MemtierCommand(Model):
    """One arbitrary command of memtier_benchmark (``--command`` and its options)."""

    command: str = Field(min_length=1, description="--command: the command line; __key__ and "
                         "__data__ are memtier's placeholders")
    ratio: int = Field(1, ge=1, description="--command-ratio")
    key_pattern: Literal["R", "S", "G", "P"] = Field(
        "R", description="--command-key-pattern: random, sequential, gaussian, parallel"
    )


class MemtierDriver(Model):
    """Parameters passed to ``memtier_benchmark`` on each client host (docs/drivers.md)."""

    threads: int = Field(4, ge=1, le=1024, description="--threads")
    clients: int = Field(50, ge=1, le=100_000, description="--clients per thread")
    pipeline: int = Field(1, ge=1, le=10_000, description="--pipeline")
    ratio: str = Field("1:10", pattern=r"^\d+:\d+$", description="--ratio SET:GET (not with "
                       "commands)")
    commands: list[MemtierCommand] | None = Field(
        None, min_length=1, description="--command, repeatable, instead of ratio"
    )
    key_pattern: str = Field("R:R", pattern=r"^[RSGP]:[RSGP]$",
                             description="--key-pattern SET:GET (with ratio)")
    data_size: int = Field(32, ge=1, le=512 * 1024 * 1024, description="--data-size")
    key_minimum: int = Field(1, ge=1, le=10**10, description="--key-minimum (memtier: > 0)")
    key_maximum: int = Field(100_000, ge=1, le=10**10, description="--key-maximum")
    requests: int | None = Field(
        None, ge=1, description="--requests per connection; omit for --test-time = "
        "benchmark.duration (whole seconds, rounded up)",
    )
    rate_limiting: int | None = Field(
        None, ge=1, description="--rate-limiting: requests/s per connection"
    )

    @model_validator(mode="after")
    def _ratio_or_commands(self) -> MemtierDriver:
        if self.commands is not None and "ratio" in self.model_fields_set:
            raise ValueError("give ratio or commands, not both")
        return self


Percent = Annotated[float, Field(ge=0.0, le=100.0)]


class Thresholds(Model):
    """The thresholds each repetition is judged by (docs/methodology.md explains every
    verdict). A value exactly at a threshold does not flag, except the server's, which is
    bound "at or above"."""

    client_cpu_percent: Percent = Field(
        90.0, description="client-bound: a client host's total CPU (all cores) above this, %")
    process_cpu_percent: Percent = Field(
        95.0, description="client-bound: one load process, or the hottest load thread, above "
        "this % of one core")
    server_cpu_percent: Percent = Field(
        90.0, description="server-bound: the server process at or above this % of the CPU it "
        "can use, or its cgroup throttled in this % of the periods when its quota is the limit")
    saturated_intervals_percent: Percent = Field(
        10.0, description="a CPU or link threshold flags a host when it is exceeded in more than "
        "this % of the window's intervals")
    link_percent: Percent = Field(
        90.0, description="network-bound: an interface above this % of its link speed")
    retransmits: int = Field(
        0, ge=0, description="network-bound: more TCP retransmits than this on a host in the "
        "window")
    cov_percent: Percent = Field(
        5.0, description="unstable across repetitions: throughput coefficient of variation "
        "above this, %")
    trend_percent: Percent = Field(
        10.0, description="unstable: the throughput trend (least-squares line) changes by more "
        "than this % of the mean over the window")
    outlier_percent: Percent = Field(
        50.0, description="unstable: one interval's throughput further than this % from the "
        "window's median")
    start_skew: Duration = Field(
        0.001, description="skewed start: start skew above this")
    start_skew_interval_percent: Percent = Field(
        10.0, description="skewed start: start skew above this % of an interval")
    min_intervals: int = Field(
        10, ge=1, le=MAX_INTERVALS, description="too short: fewer intervals than this in the "
        "common window")
    settle_intervals: int = Field(
        3, ge=1, le=MAX_INTERVALS, description="too short: how many first intervals of the "
        "window must have settled after the warm-up")
    settle_percent: Percent = Field(
        10.0, description="too short: the first settle_intervals' mean throughput below the "
        "median of the rest by more than this %")


class LoadTarget(Model):
    """One server of a run that loads several at once, and the clients that load it."""

    server: Name = Field(description="the server loaded (a servers[] name)")
    driver: Literal["builtin", "http"] = Field(
        description="the driver loading it (builtin for a kind resp server, http for a kind "
        "http one); its parameters are benchmark.builtin or benchmark.http")
    clients: list[Name] = Field(
        min_length=1, description="the client hosts loading this server; each client loads "
        "one target")


class Benchmark(Model):
    """What load to run and for how long."""

    driver: Literal["builtin", "redis-benchmark", "memtier", "http"] = Field(
        "builtin", description="load generator"
    )
    repetitions: int = Field(
        3, ge=1, le=1000, description="full repetitions; fewer than 3 is marked in the results"
    )
    warmup: Duration = Field(5.0, description="warm-up per repetition, discarded")
    duration: PositiveDuration = Field(30.0, description="measure phase per repetition")
    interval: Annotated[Duration, AfterValidator(within(MIN_INTERVAL_S, MAX_INTERVAL_S))] = Field(
        1.0, description="histogram and metrics sampling interval (10ms to 1h); warm-up and "
        "duration are rounded up to whole intervals"
    )
    error_threshold: float = Field(
        0.01, ge=0.0, le=1.0, description="error rate above which a repetition is marked"
    )
    thresholds: Thresholds = Field(
        default_factory=Thresholds,
        description="what each repetition's verdicts are judged by (docs/methodology.md)")
    drain_timeout: Annotated[Duration, AfterValidator(within(0.0, MAX_DRAIN_S))] = Field(
        10.0, description="at the planned end, how long the load waits for the replies still "
        "in flight (recorded in the last interval; those that never come count as timeout "
        "errors); 0s to 10min"
    )
    builtin: BuiltinDriver = Field(
        default_factory=BuiltinDriver, description="parameters when driver is builtin"
    )
    redis_benchmark: RedisBenchmarkDriver = Field(
        default_factory=RedisBenchmarkDriver,
        description="parameters when driver is redis-benchmark",
    )
    memtier: MemtierDriver = Field(
        default_factory=MemtierDriver, description="parameters when driver is memtier"
    )
    http: HttpDriver = Field(
        default_factory=HttpDriver, description="parameters when driver is http"
    )
    targets: list[LoadTarget] | None = Field(
        None, min_length=2, description="several servers loaded at once, each by its own "
        "clients, each with its own figures (e.g. a REST model server and Redis), started "
        "together (docs/model-serving.md); default: every client loads the one server with "
        "driver")


class Baseline(Model):
    """The netperf TCP_RR baseline measured between every client and every server host."""

    enabled: bool = Field(
        True, description="run the baseline before the first repetition and after the last"
    )
    duration: Annotated[PositiveDuration, AfterValidator(whole_seconds)] = Field(
        10.0, description="netperf -l per client/server pair, in whole seconds"
    )
    iterations: int = Field(
        3, ge=1, le=100, description="netperf runs per pair, one after the other; their "
        "spread is what a drift between the baselines before and after is judged against"
    )
    pairs: Literal["clients-to-servers", "all"] = Field(
        "clients-to-servers", description="clients-to-servers: every client to every server "
        "host; all: every host to every other host (a matrix, to find a slow link)"
    )
    request_size: int = Field(1, ge=1, le=65536, description="TCP_RR request bytes")
    response_size: int = Field(1, ge=1, le=65536, description="TCP_RR response bytes")
    value_size_from_benchmark: bool = Field(
        False, description="use the benchmark driver's value size as the TCP_RR request and "
        "response size instead of request_size and response_size"
    )
    stream: bool = Field(False, description="also measure bandwidth with netperf TCP_STREAM")
    port: Port = Field(12865, description="netserver control port on server hosts")


class Agent(Model):
    """How coord's agents behave on the hosts."""

    watchdog: Annotated[Duration, AfterValidator(within(
        MIN_WATCHDOG_S, why=f" (coord heartbeats every {format_duration(HEARTBEAT_INTERVAL)})"
    ))] = Field(
        15.0, description="an agent that hears nothing from coord for this long stops and exits "
        f"(at least {format_duration(MIN_WATCHDOG_S)}: coord heartbeats every "
        f"{format_duration(HEARTBEAT_INTERVAL)})"
    )
    cache_dir: str = Field(
        "~/.cache/coord", description="where the agent bundle and logs live on each host"
    )


class Inventory(Model):
    """A whole benchmark: hosts, targets, load and baseline."""

    version: Literal[1] = Field(1, description="inventory format version")
    name: Name = Field("benchmark", description="name used in result directory names")
    ssh: SSHDefaults = Field(default_factory=SSHDefaults, description="SSH defaults")
    hosts: list[Host] = Field(min_length=1, description="every machine taking part")
    servers: list[Server] = Field(min_length=1, description="endpoints under test")
    benchmark: Benchmark = Field(default_factory=Benchmark, description="the load")
    baseline: Baseline = Field(default_factory=Baseline, description="netperf baseline")
    agent: Agent = Field(default_factory=Agent, description="agent behaviour")

    def host(self, name: str) -> Host:
        """The host called ``name``; ``KeyError`` if none is."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def data_address(self, server: Server) -> str:
        """Where the load reaches ``server``: its own ``address``, else its host's."""
        return server.address or self.host(server.host).address

    @property
    def clients(self) -> list[Host]:
        """Hosts that generate load."""
        return [host for host in self.hosts if "client" in host.roles]

    @property
    def server_hosts(self) -> list[Host]:
        """Hosts that run a target server (by role or by being named in ``servers``)."""
        names = {server.host for server in self.servers}
        return [host for host in self.hosts if "server" in host.roles or host.name in names]

    @property
    def same_machine_groups(self) -> list[list[int]]:
        """Indices of hosts that share one address (one machine), for groups of two or more."""
        by_address: dict[str, list[int]] = {}
        for index, host in enumerate(self.hosts):
            by_address.setdefault(machine_key(host.address), []).append(index)
        return [group for group in by_address.values() if len(group) > 1]

    @property
    def shared_hosts(self) -> list[Host]:
        """Hosts that run load and a server: the methodology wants separate machines."""
        server_names = {host.name for host in self.server_hosts}
        return [host for host in self.clients if host.name in server_names]


def machine_key(address: str) -> str:
    """One spelling per address (``::1`` and ``0::1`` are one; DNS names ignore case)."""
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address.lower().rstrip(".")

