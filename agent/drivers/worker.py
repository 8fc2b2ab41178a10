"""One load process of the builtin driver: N connections to the target, one closed loop.

The agent starts it with the kit (:mod:`agent.drivers.kit.child`: a fresh interpreter that
dies with the agent, configure / ready / start / stop over its channel) and runs it on the T0
grid (:mod:`agent.drivers.kit.timed`); this module is the RESP load itself.

The loop (:meth:`Worker.loop`) is one ``epoll`` over raw non-blocking sockets, a
``hiredis.Reader`` per connection: each connection sends a batch of ``pipeline`` requests and
sends the next as soon as every reply of the batch arrived. A reply's latency is the time from
its batch's send to the return of the ``epoll_wait`` that reported it (``perf_counter_ns``, read
once per poll round: the reply had arrived by then, and the loop's work on the round's other
replies stays out of it); replies read together share it, so they are counted together. Error
replies are counted by type and left out of the histograms. A read that is the first of its
batch and byte for byte the replies the batch expects (``Batch.replies``: a SET/GET batch whose
SETs succeed and whose GETs find the mix's value) is the whole batch answered, counted without
parsing a reply: hiredis builds a Python object per reply, about a quarter of the loop's user
time at pipeline 16 (docs/architecture.md). A connection that fails counts its
lost requests as ``connection`` errors and reconnects (:mod:`agent.drivers.resp_connection`)
while the others go on. A connection that awaits replies for ``reply_timeout_s`` without one
counts its unanswered requests as ``timeout`` errors and is replaced; the loop wakes at the
earliest such deadline.

The loop rolls the :class:`~agent.drivers.kit.recorder.LoadRecorder` when the perf clock
passes an interval boundary of the grid (replies handled in the poll round that crosses a
boundary still count for the interval that ends: a few microseconds of slack).

At the planned end the loop drains: it sends no new batch, keeps reading until every batch in
flight is answered or the drain limit (``timeline.drain_ns``, from the planned end) passes, and
records the late replies, at their real latency, in the last interval, reported only then;
the requests still unanswered at the limit count as ``timeout`` errors. Without the drain a
stall that overlaps the end would leave no trace (its replies were simply never read). A stop
from the agent still ends the drain at once.

Each connection keeps the instant of its last reply; the loop keeps the longest gap between
two replies of one connection (``gap_usec`` of the interval): two assignments and a compare per
read, nothing per reply.
"""

from __future__ import annotations

import random
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import hiredis

from agent.drivers.builtin_params import DEFAULT_REPLY_TIMEOUT_S
from agent.drivers.channel import Channel
from agent.drivers.cluster_mix import ClusterMix
from agent.drivers.cluster_redirects import (
    ERROR_REDIRECT_LIMIT,
    commands_at,
    follow,
    is_redirection,
    request_span,
)
from agent.drivers.cluster_slots import Node, Redirection, SlotMap
from agent.drivers.cluster_template_mix import ClusterTemplateMix
from agent.drivers.errors import (
    KIND_CONFIG,
    KIND_INTERNAL,
    KIND_SERVER,
    KIND_UNREACHABLE,
    DriverError,
)
from agent.drivers.intervals import ScheduleLateness
from agent.drivers.keyspace import UNIFORM, Distribution, Keyspace
from agent.drivers.kit import spin_counter
from agent.drivers.kit.child import child_main
from agent.drivers.kit.counted import CountedInterval, IntervalCounts
from agent.drivers.kit.recorder import IntervalPacking, LoadRecorder
from agent.drivers.kit.timed import COMPLETED, STOPPED, IntervalGrid, run_timed, stop_requested
from agent.drivers.resp import Batch, RequestMix, encode_command, error_type
from agent.drivers.resp_connection import (
    ERROR_CONNECTION,
    ERROR_REPLIES,
    ERROR_TIMEOUT,
    IN,
    NO_REPLY,
    OUT,
    READ_EVENTS,
    READY,
    RECV_SIZE,
    Connection,
    RespConnections,
    describe_os_error,
    exchange,
)
from agent.drivers.spec import Target, Timeline, parse_target
from agent.drivers.templates import (
    UNEXPECTED,
    PreloadCommand,
    TemplateError,
    make_value,
    parse_preload_command,
    parse_templates,
)
from agent.histograms import HistogramParams, IntervalRecorder

__all__ = ["MODULE", "PRELOAD_BATCH", "RECV_SIZE", "Worker", "WorkerConfig", "main"]

#: The module the agent's load processes run (``main``).
MODULE: Final = "agent.drivers.worker"
#: Time the server has to answer one preload batch.
PRELOAD_REPLY_TIMEOUT = 60.0
#: SET commands per preload batch.
PRELOAD_BATCH = 1000
#: Preload batches sent before the first one's replies are read: the server works on one
#: while the next is encoded (one at a time, the two took turns).
PRELOAD_IN_FLIGHT = 2
#: Time a node has to answer a request re-sent after a redirection.
REDIRECT_REPLY_TIMEOUT = 10.0
#: Seconds between two ``preload_progress`` messages of one load process (the agent's
#: ``load_progress`` shows their sum; the coordinator draws the preload's progress bar).
PRELOAD_PROGRESS_INTERVAL = 0.25


@dataclass(frozen=True)
class OpenLoopPlan:
    """The open loop's share of one load process (:mod:`agent.drivers.open_worker`): the
    host's rate and connections, and where this process's connections start among them (the
    schedules are staggered over the host's connections)."""

    rate: float
    arrivals: str
    host_connections: int
    first_connection: int

    def to_json(self) -> dict[str, Any]:
        return {"rate": self.rate, "arrivals": self.arrivals,
                "host_connections": self.host_connections,
                "first_connection": self.first_connection}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> OpenLoopPlan | None:
        if data is None:
            return None
        return cls(rate=float(data["rate"]), arrivals=str(data["arrivals"]),
                   host_connections=int(data["host_connections"]),
                   first_connection=int(data["first_connection"]))


@dataclass(frozen=True)
class WorkerConfig:
    """What one load process is told to do (sent as its ``configure`` message)."""

    index: int
    target: Target
    connections: int
    pipeline: int
    set_ratio: float
    keyspace: int
    value_size: int
    seed: int
    preload: tuple[int, int] | None
    timeline: Timeline
    histogram: HistogramParams
    open_loop: OpenLoopPlan | None = None  # None: the closed loop
    templates: tuple[dict[str, Any], ...] | None = None
    """The command templates as given (``agent.drivers.templates``); None: the SET/GET mix."""
    setup: tuple[tuple[str, ...], ...] = ()
    """Commands sent once on the first connection before the load (``SCRIPT LOAD``...)."""
    key_prefix: str = "key:"
    distribution: Distribution = UNIFORM
    key_start: int = 0
    """Where a sequential walk of the keys starts (this process's share)."""
    reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S
    """A connection with requests in flight and no reply for this long: they are ``timeout``
    errors and the connection is replaced (:meth:`RespConnections._expire`)."""
    busy_poll_ns: int = 0
    """Closed loop: how long to poll without sleeping when no reply is ready (0: never)."""
    preload_command: tuple[str, ...] | None = None
    """The preload's command for each key (``agent.drivers.templates.PreloadCommand``);
    None: ``SET {key} {value}``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "target": self.target.to_json(),
            "connections": self.connections,
            "pipeline": self.pipeline,
            "set_ratio": self.set_ratio,
            "keyspace": self.keyspace,
            "value_size": self.value_size,
            "seed": self.seed,
            "preload": list(self.preload) if self.preload is not None else None,
            "timeline": self.timeline.to_json(),
            "histogram": self.histogram.to_json(),
            "open_loop": None if self.open_loop is None else self.open_loop.to_json(),
            "templates": list(self.templates) if self.templates is not None else None,
            "setup": [list(words) for words in self.setup],
            "key_prefix": self.key_prefix,
            "distribution": self.distribution.to_json(),
            "key_start": self.key_start,
            "reply_timeout_s": self.reply_timeout_s,
            "busy_poll_ns": self.busy_poll_ns,
            "preload_command": (list(self.preload_command)
                                if self.preload_command is not None else None),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerConfig:
        preload = data["preload"]
        return cls(
            index=int(data["index"]),
            target=parse_target(data["target"]),
            connections=int(data["connections"]),
            pipeline=int(data["pipeline"]),
            set_ratio=float(data["set_ratio"]),
            keyspace=int(data["keyspace"]),
            value_size=int(data["value_size"]),
            seed=int(data["seed"]),
            preload=(int(preload[0]), int(preload[1])) if preload is not None else None,
            timeline=Timeline.from_json(data["timeline"]),
            histogram=HistogramParams.from_json(data["histogram"]),
            open_loop=OpenLoopPlan.from_json(data.get("open_loop")),
            templates=tuple(templates) if (templates := data.get("templates")) else None,
            setup=tuple(tuple(str(w) for w in words) for words in data.get("setup") or ()),
            key_prefix=str(data.get("key_prefix", "key:")),
            distribution=Distribution(**data.get("distribution") or {}),
            key_start=int(data.get("key_start", 0)),
            reply_timeout_s=float(data.get("reply_timeout_s", DEFAULT_REPLY_TIMEOUT_S)),
            busy_poll_ns=int(data.get("busy_poll_ns", 0)),
            preload_command=(tuple(str(word) for word in words)
                             if (words := data.get("preload_command")) else None),
        )

    def keys(self) -> Keyspace:
        """The keyspace: ``keyspace`` keys, their prefix and distribution."""
        return Keyspace(self.keyspace, self.key_prefix, self.distribution)


class SideFailure(Exception):
    """The reply of a re-send whose side connection failed: a ``connection`` error."""


def read_template_file(path: str) -> bytes:
    """A ``{file:PATH}`` placeholder's bytes, read once on the client host."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DriverError(KIND_CONFIG, f"{{file:{path}}}: cannot read it: {exc.strerror}") from None


# --- entry point ------------------------------------------------------------------------------


def bad_replies(
    replies: list[Any], first: int, batch: Batch | None
) -> list[tuple[int, Any]] | None:
    """The error replies among ``replies`` (those of one read, counted from ``first``, the
    batch's replies already taken) by position, a reply of another type than its template
    expects among them; None when there is none.

    The loops call it only when the read brought an error reply (:data:`ERROR_REPLIES`) or
    the batch checks its replies' types: the common read costs no Python per reply."""
    bad: list[tuple[int, Any]] | None = None
    reply_error = hiredis.ReplyError
    checks = batch.checks if batch is not None else None
    for done, reply in enumerate(replies, first):
        if reply.__class__ is reply_error:
            if bad is None:
                bad = [(done, reply)]
            else:
                bad.append((done, reply))
        elif checks is not None and done < len(checks):
            check = checks[done]
            if check is not None and not check(reply):
                unexpected = reply_error(f"{UNEXPECTED} reply {type(reply).__name__}")
                if bad is None:
                    bad = [(done, unexpected)]
                else:
                    bad.append((done, unexpected))
    return bad


def main(argv: Sequence[str]) -> NoReturn:
    """The load process's entry (:data:`agent.drivers.kit.child.BOOT`)."""
    child_main(argv, load_for)


def load_for(config: dict[str, Any], channel: Channel) -> Worker:
    """The closed loop, or the open loop when the config has a rate."""
    if config.get("open_loop") is None:
        return Worker.from_config(config, channel)
    from agent.drivers.open_worker import OpenWorker  # noqa: PLC0415 (it imports this module)

    return OpenWorker.from_config(config, channel)


class Worker(RespConnections):
    """Connections, request mix and recorder of one load process."""

    def __init__(self, config: WorkerConfig, channel: Channel) -> None:
        templates = None
        if config.templates is not None:
            try:
                templates = parse_templates(config.templates, "spec.params.templates")
            except TemplateError as exc:
                raise DriverError(KIND_CONFIG, str(exc)) from None
        try:
            mix = RequestMix(
                keyspace=config.keys(),
                set_ratio=config.set_ratio,
                value_size=config.value_size,
                pipeline=config.pipeline,
                seed=config.seed,
                templates=templates,
                key_start=config.key_start,
                read_file=read_template_file,
            )
        except ValueError as exc:
            raise DriverError(KIND_CONFIG, str(exc)) from None
        super().__init__(
            config.target,
            config.connections,
            LoadRecorder(config.histogram, mix.commands, config.timeline),
        )
        self.config = config
        self.channel = channel
        self.reply_timeout_ns = int(config.reply_timeout_s * 1e9)
        self.cluster: ClusterMix | ClusterTemplateMix | None = None
        self.mix = mix
        self.shard_buckets: list[dict[int, int]] | None = None  # a cluster: by conn.node
        self._side: dict[Node, socket.socket] = {}  # a cluster: re-sends after a redirection
        self._answered_by = ""  # the node the last re-send was answered by
        # a cluster: per connection, the MULTI block re-sent whole (its batch's send instant,
        # its last reply's position): the block's other error replies are not counted again
        self._resent_block: dict[Connection, tuple[int, int]] = {}
        self._preload_done = self._preload_total = 0  # keys SET / to SET by the preload
        self._preload_reported = 0.0  # monotonic: the last preload_progress message
        self._spin = spin_counter.attached() or spin_counter.SpinTally()  # polling's CPU
        self._rolling: deque[IntervalPacking] = deque()  # intervals taken, being packed

    @classmethod
    def from_config(cls, config: dict[str, Any], channel: Channel) -> Worker:
        return cls(WorkerConfig.from_json(config), channel)

    # --- prepare ------------------------------------------------------------------------

    def prepare(self) -> int:
        """Open and authenticate every connection, preload if asked; DriverError if the
        target cannot be used. The connections opened."""
        self.open_all()
        if self.slots is not None:
            self._route(self.slots)
        else:
            for conn in self.connections:
                conn.next_batch = self.mix.next_batch
        if self.config.setup:
            self._setup(self.connections[0])
        if self.config.preload is not None:
            first, end = self.config.preload
            started = time.monotonic()
            self._preload_total, self._preload_reported = end - first, started
            self.channel.send({"type": "preload_progress", "done": 0, "total": end - first})
            if self.cluster is not None:
                self._preload_cluster(self.cluster, first, end, self._preload_command())
            else:
                self._preload(self.connections[0], first, end, self._preload_command())
            self.channel.send({"type": "preloaded", "keys": end - first,
                               "seconds": time.monotonic() - started})  # fmt: skip
        self.set_nonblocking()
        self._open_poller(self.channel.fileno())  # set-up done before T0, not at it
        return len(self.connections)

    def _route(self, slots: SlotMap) -> None:
        """A cluster: each connection sends only requests whose keys its primary serves (the
        SET/GET mix over the default keyspace by its own fast path, anything else by the
        templates' key arguments)."""
        config = self.config
        if (config.templates is None and config.key_prefix == "key:"
                and config.distribution == UNIFORM):
            self.cluster = ClusterMix(keyspace=config.keyspace, set_ratio=config.set_ratio,
                                      value_size=config.value_size, pipeline=config.pipeline,
                                      seed=config.seed, slots=slots)
        else:
            try:
                self.cluster = ClusterTemplateMix(
                    expander=self.mix.expander, pipeline=config.pipeline, slots=slots,
                    key_prefix=config.key_prefix,
                    checks=any(t.expect is not None for t in self.mix.expander.templates),
                    value_arg=b"$%d\r\n%s\r\n" % (config.value_size,
                                                   make_value(config.value_size)))
            except TemplateError as exc:
                raise DriverError(KIND_CONFIG, str(exc)) from None
        empty = self.cluster.empty_nodes()
        if empty:
            raise DriverError(KIND_CONFIG, f"keyspace {config.keyspace} is too small for the "
                              f"cluster: primary {slots.nodes[empty[0]].endpoint} serves none "
                              "of its keys")
        for conn in self.connections:
            conn.next_batch = self.cluster.stream(conn.node)
        self._record_shards(slots)

    def _record_shards(self, slots: SlotMap) -> None:
        """Each primary's replies and latencies recorded apart too (``IntervalData.shards``)."""
        shards = IntervalRecorder(self.config.histogram, [n.endpoint for n in slots.nodes])
        self.recorder.shards = shards
        self.shard_buckets = shards.live([node.endpoint for node in slots.nodes])

    def _preload_command(self) -> PreloadCommand | None:
        """The inventory's own preload command, ready to encode (None: SET)."""
        config = self.config
        if config.preload_command is None:
            return None
        try:
            words = parse_preload_command(list(config.preload_command),
                                          "spec.params.preload_command")
        except TemplateError as exc:
            raise DriverError(KIND_CONFIG, str(exc)) from None
        return PreloadCommand(words, config.keys(), config.value_size,
                              random.Random(config.seed + 1),  # noqa: S311 (a load)
                              read_template_file)

    def _preload_cluster(self, cluster: ClusterMix | ClusterTemplateMix, first: int,
                         end: int, command: PreloadCommand | None) -> None:
        """Each primary's keys of ``[first, end)`` through a connection to it."""
        for node in range(len(cluster.nodes)):
            conn = next(conn for conn in self.connections if conn.node == node)
            sock = conn.sock
            if sock is None:
                raise DriverError(KIND_INTERNAL, "preload without a connection")
            sock.settimeout(PRELOAD_REPLY_TIMEOUT)
            endpoint = cluster.nodes[node].endpoint
            for count, payload in cluster.preload_batches(node, first, end, PRELOAD_BATCH,
                                                          command):
                for reply in exchange(sock, payload, count, endpoint):
                    if isinstance(reply, hiredis.ReplyError):
                        raise DriverError(
                            KIND_SERVER, f"preloading keys on {endpoint} failed: {reply}")
                self._preloaded(count)

    def _moved(self, redirection: Redirection) -> None:
        """A ``MOVED`` reply moves its slot to the node it names (a known primary)."""
        cluster = self.cluster
        if cluster is not None and redirection.node in cluster.nodes:
            cluster.move(redirection.slot, cluster.nodes.index(redirection.node))

    def _follow(self, conn: Connection, batch: Batch, position: int, reply: Any) -> None:
        """Reply ``position`` of ``batch`` was a redirection: send its request (the command, or
        its whole MULTI block) again where the cluster says until it is answered
        (agent.drivers.cluster_redirects). Its latency runs from its batch's send (or intended
        send) to the final reply. The re-send waits for its reply on a blocking side
        connection: redirections happen while a slot migrates, and the loop's other
        connections wait for one round trip each time (docs/drivers.md)."""
        first, replies = request_span(batch.kinds, position)
        last = first + replies - 1
        if replies > 1:
            self._resent_block[conn] = (conn.sent_ns, last)
        outcome = follow(reply, commands_at(batch.payload, first, replies),
                         self.target.address, self._side_send, replies=replies)
        received_ns = time.perf_counter_ns()
        recorder = self.recorder
        for kind, count in outcome.redirects.items():
            recorder.count_redirect(kind, count)
        for redirection in outcome.moved:
            self._moved(redirection)
        final = outcome.reply
        if outcome.gave_up:
            recorder.count_error(ERROR_REDIRECT_LIMIT)
        elif isinstance(final, SideFailure):
            recorder.count_error(ERROR_CONNECTION)
        elif isinstance(final, hiredis.ReplyError):
            recorder.count_error(error_type(str(final)))
        else:
            latency = recorder.latencies.params.bucket_floor(
                (received_ns - conn.sent_ns + 500) // 1000 or 1)
            bucket = recorder.bucket(self.mix.commands[batch.kinds[last]])
            bucket[latency] = bucket.get(latency, 0) + 1
            if recorder.shards is not None:
                shard = recorder.shards.bucket(self._answered_by)
                shard[latency] = shard.get(latency, 0) + 1

    def _in_resent_block(self, conn: Connection, position: int) -> bool:
        """Whether reply ``position`` of ``conn``'s batch in flight belongs to a MULTI block
        already sent again (its ``EXECABORT``, a second redirected command)."""
        block = self._resent_block.get(conn)
        return block is not None and block[0] == conn.sent_ns and position <= block[1]

    def _side_send(self, node: Node, payload: bytes, replies: int) -> list[Any]:
        """Send ``payload`` to ``node`` on this process's side connection to it (opened on
        first use) and return its replies; a failure is one ``connection`` error reply."""
        self._answered_by = node.endpoint
        try:
            sock = self._side.get(node)
            if sock is None:
                sock = self._open_blocking(self._resolve(node.host, node.port))
                sock.settimeout(REDIRECT_REPLY_TIMEOUT)
                self._side[node] = sock
            return exchange(sock, payload, replies, node.endpoint)
        except (DriverError, OSError) as exc:
            side = self._side.pop(node, None)
            if side is not None:
                side.close()
            return [SideFailure(f"{node.endpoint}: {exc}")]

    def close(self) -> None:
        for sock in self._side.values():
            sock.close()
        self._side.clear()
        super().close()

    def _setup(self, conn: Connection) -> None:
        """Send the ``setup`` commands once (scripts, functions); an error reply fails."""
        sock = conn.sock
        if sock is None:
            raise DriverError(KIND_INTERNAL, "setup without a connection")
        sock.settimeout(PRELOAD_REPLY_TIMEOUT)
        payload = b"".join(encode_command(*words) for words in self.config.setup)
        endpoint = self.target.endpoint
        for words, reply in zip(
            self.config.setup, exchange(sock, payload, len(self.config.setup), endpoint),
            strict=True,
        ):
            if isinstance(reply, hiredis.ReplyError):
                raise DriverError(KIND_SERVER, f"setup command {words[0]} on {endpoint} failed: "
                                  f"{reply}")  # fmt: skip

    def _preload(self, conn: Connection, first: int, end: int,
                 command: PreloadCommand | None) -> None:
        sock = conn.sock
        if sock is None:
            raise DriverError(KIND_INTERNAL, "preload without a connection")
        sock.settimeout(PRELOAD_REPLY_TIMEOUT)
        endpoint = self.target.endpoint
        reader = hiredis.Reader()
        awaited: deque[int] = deque()  # replies of each batch sent and not yet read
        try:
            for batch_start, payload in zip(
                range(first, end, PRELOAD_BATCH),
                self.mix.preload_batches(first, end, PRELOAD_BATCH, command),
                strict=True,
            ):
                sock.sendall(payload)
                awaited.append(min(PRELOAD_BATCH, end - batch_start))
                if len(awaited) >= PRELOAD_IN_FLIGHT:
                    self._preloaded(self._preload_replies(sock, reader, awaited.popleft()))
            while awaited:
                self._preloaded(self._preload_replies(sock, reader, awaited.popleft()))
        except TimeoutError:
            raise DriverError(KIND_UNREACHABLE, f"{endpoint} did not answer in time") from None
        except OSError as exc:
            raise DriverError(
                KIND_UNREACHABLE, f"connection to {endpoint} failed: {describe_os_error(exc)}"
            ) from None

    def _preloaded(self, keys: int) -> None:
        """``keys`` more were SET: a ``preload_progress`` message when one is due."""
        self._preload_done += keys
        now = time.monotonic()
        if now - self._preload_reported >= PRELOAD_PROGRESS_INTERVAL:
            self._preload_reported = now
            self.channel.send({"type": "preload_progress", "done": self._preload_done,
                               "total": self._preload_total})

    def _preload_replies(self, sock: socket.socket, reader: hiredis.Reader, count: int) -> int:
        """Read ``count`` preload replies (returned); an error reply fails the preload."""
        endpoint = self.target.endpoint
        wanted = count
        while count:
            reply = reader.gets()
            if reply is False:
                data = sock.recv(RECV_SIZE)
                if not data:
                    raise DriverError(
                        KIND_UNREACHABLE, f"{endpoint} closed the connection before answering"
                    )
                reader.feed(data)
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise DriverError(KIND_SERVER, f"preloading keys on {endpoint} failed: {reply}")
            count -= 1
        return wanted

    # --- the closed loop on the T0 grid ---------------------------------------------------

    def run_at(self, t0_ns: int) -> None:
        run_timed(self.channel, self.config.timeline, t0_ns, self)

    def begin(self, grid: IntervalGrid) -> list[int]:
        """Every ready connection sends its first batch; the instant each ``send`` returned,
        for those that sent (the poller was set up by :meth:`prepare`, before T0)."""
        sent_at: list[int] = []
        for conn in self.connections:
            if conn.state == READY and self._send_batch(conn, time.perf_counter_ns()):
                sent_at.append(time.time_ns())
        return sent_at

    def loop(self, grid: IntervalGrid) -> str:  # noqa: PLR0912, PLR0915
        """The event loop; returns why it ended: ``completed`` or ``stopped``.

        The hot loop stays in one frame, its names in locals: a call or an attribute lookup
        per reply is throughput lost (bench/bench_builtin_driver.py)."""
        poll = self._poller.poll
        by_fd = self._by_fd
        control_fd = self.channel.fileno()
        perf = time.perf_counter_ns
        recorder = self.recorder
        buckets = recorder.latencies.live(self.mix.commands)  # kept current by _take's swap
        shard_buckets = self.shard_buckets
        buffer = self._buffer  # one receive buffer: hiredis copies what it is fed
        error_replies = ERROR_REPLIES
        errors_seen = error_replies[0]
        exact_below = recorder.latencies.params.exact_below  # from here: bucket_floor
        bucket_floor = recorder.latencies.params.bucket_floor
        requests = bytes_in = bytes_out = gap = 0
        last: tuple[int, bool] | None = None  # the last interval, reported after the drain
        drain_end = grid.end + self.config.timeline.drain_ns
        busy_poll = self._busy_poll if self.config.busy_poll_ns else None
        rolling = self._rolling
        wake = self._wake(grid)
        while True:
            if rolling:  # an ended interval being packed: one slice per round
                self._roll_step()
            now = perf()
            if now >= wake:
                recorder.requests += requests
                recorder.bytes_received += bytes_in
                recorder.bytes_sent += bytes_out
                recorder.note_gap(gap)
                requests = bytes_in = bytes_out = gap = 0
                if last is None:
                    last = self._housekeeping(grid, now)
                    if last is not None:
                        self._drain_start()
                if last is not None and (now >= drain_end or self._answered()):
                    self._drained(last, now)
                    return COMPLETED
                wake = drain_end if last is not None else self._wake(grid)
            timeout = (wake - now) / 1e9
            if timeout < 0:  # (never, by construction; a negative timeout would block forever)
                timeout = 0.0
            if busy_poll is not None and not rolling:
                ready, received_ns = busy_poll(wake)
            else:
                ready = poll(0 if rolling else timeout)
                received_ns = perf()  # every reply of this round arrived by now
            for fd, events in ready:
                conn = by_fd.get(fd)
                if conn is None:
                    if fd == control_fd:
                        recorder.requests += requests
                        recorder.bytes_received += bytes_in
                        recorder.bytes_sent += bytes_out
                        recorder.note_gap(gap)
                        requests = bytes_in = bytes_out = gap = 0
                        if stop_requested(self.channel):
                            self._flush_rolls()
                            if last is not None:  # the drain is cut short
                                self.report_interval(last[0], complete=False)
                            return STOPPED
                    continue
                if conn.state:  # not READY: connecting or authenticating
                    self._advance(conn, events)
                    wake = self._wake(grid)
                    continue
                if events != IN:  # (rare: writable again, or an error or hang-up to read)
                    if events & OUT and conn.out:
                        self._flush(conn)
                    if not events & READ_EVENTS:
                        continue
                try:
                    size = conn.recv_into(buffer)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    self._fail(conn)
                    wake = self._wake(grid) if last is None else now
                    continue
                if not size:
                    self._fail(conn)
                    wake = self._wake(grid) if last is None else now
                    continue
                bytes_in += size
                first = conn.received
                batch = conn.batch
                if (not first and batch is not None and (expected := batch.replies) is not None
                        and size == len(expected) and buffer.startswith(expected)
                        and not conn.has_data()):
                    replies = None  # the whole batch, byte for byte as expected: no parsing
                    done = batch.size
                else:
                    conn.feed(buffer, 0, size)
                    replies = [*iter(conn.gets, NO_REPLY)]
                    if not replies:
                        continue
                    done = first + len(replies)
                waited = received_ns - conn.last_reply_ns
                if waited > gap:  # noqa: PLR1730 - a call to max() per read costs more
                    gap = waited
                conn.last_reply_ns = received_ns
                if batch is None:  # replies nobody asked for: the server is confused
                    self._fail(conn)
                    wake = self._wake(grid) if last is None else now
                    continue
                requests += done - first
                latency = (received_ns - conn.sent_ns + 500) // 1000 or 1  # nearest µs
                if latency >= exact_below:  # an overload's: under its bucket's floor
                    latency = bucket_floor(latency)
                wanted = batch.size
                bad = None
                if replies is not None and (error_replies[0] != errors_seen
                                            or batch.checks is not None):
                    errors_seen = error_replies[0]
                    bad = bad_replies(replies, first, batch)
                if bad is None and first == 0 and done == wanted:
                    tally = batch.tally
                else:
                    tally = tuple(enumerate(self._count(conn, batch, first, done, bad)))
                for kind, count in tally:
                    if count:
                        bucket = buckets[kind]
                        bucket[latency] = bucket.get(latency, 0) + count
                if shard_buckets is not None and (answered := sum([c for _, c in tally])):
                    bucket = shard_buckets[conn.node]
                    bucket[latency] = bucket.get(latency, 0) + answered
                if done < wanted:
                    conn.received = done
                    continue
                if last is not None:  # draining: no new batch; the loop's top sees if all came
                    conn.batch = None
                    conn.received = 0
                    wake = now
                    continue
                # The whole batch is answered: send the next one (closed loop).
                batch = conn.next_batch()
                conn.batch = batch
                conn.received = 0
                payload = batch.payload
                conn.sent_ns = perf()
                try:
                    sent = conn.send(payload)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    self._fail(conn)
                    wake = self._wake(grid) if last is None else now
                    continue
                bytes_out += sent
                if sent < len(payload):
                    self._pend(conn, payload[sent:])

    def _busy_poll(self, wake: int) -> tuple[list[tuple[int, int]], int]:
        """Poll without sleeping for up to ``busy_poll_ns`` (or until ``wake``), then sleep
        until ``wake`` if nothing came: what was ready and the instant it was seen. The
        polling's CPU time is counted (:func:`agent.drivers.kit.spin_counter.poll_spinning`)
        for the verdicts to leave out."""
        poll = self._poller.poll
        perf = time.perf_counter_ns
        ready, seen = spin_counter.poll_spinning(
            poll, min(perf() + self.config.busy_poll_ns, wake), self._spin)
        if ready:
            return ready, seen
        return poll(max(0.0, (wake - perf()) / 1e9)), perf()

    def _count(
        self, conn: Connection, batch: Batch, first: int, done: int,
        bad: list[tuple[int, Any]] | None,
    ) -> list[int]:
        """Replies per command among replies ``[first, done)`` of ``batch``, error replies
        left out (and counted by type); a redirected request (a cluster's ``MOVED`` or
        ``ASK``; a MULTI block whole, its ``EXECABORT`` not counted) is sent again and
        recorded apart, with its final reply."""
        kinds = batch.kinds[first:done]
        counts = [kinds.count(kind) for kind in range(len(batch.counts))]
        for position, reply in bad or ():
            kind = batch.kinds[position]
            if kind >= 0:  # not HIDDEN (a MULTI block's OK and QUEUED replies)
                counts[kind] -= 1
            if self.slots is not None:
                if self._resent_block and self._in_resent_block(conn, position):
                    continue
                if is_redirection(str(reply)):
                    self._follow(conn, batch, position, reply)
                    continue
            self.recorder.count_error(error_type(str(reply)))
        return counts

    def _send_batch(self, conn: Connection, now: int) -> bool:
        """Send ``conn`` a new batch (its reply gaps start here); whether any of it went out."""
        batch = conn.next_batch()
        conn.batch = batch
        conn.received = 0
        conn.sent_ns = conn.last_reply_ns = now
        try:
            sent = conn.send(batch.payload)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._fail(conn)
            return False
        self.recorder.bytes_sent += sent
        if sent < len(batch.payload):
            self._pend(conn, batch.payload[sent:])
        return sent > 0

    def _pend(self, conn: Connection, rest: bytes) -> None:
        """Keep what the socket did not take; send it when it becomes writable."""
        conn.out = rest
        self._poller.modify(conn.fd, IN | OUT)

    def _flush(self, conn: Connection) -> None:
        try:
            sent = conn.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._fail(conn)
            return
        self.recorder.bytes_sent += sent
        conn.out = conn.out[sent:]
        if not conn.out:
            self._poller.modify(conn.fd, IN)

    # --- intervals ----------------------------------------------------------------------

    def _wake(self, grid: IntervalGrid) -> int:
        """The next perf-clock instant the loop must act at: a boundary, a reconnection, a
        reply timeout or a reconnection's connect deadline
        (:meth:`RespConnections.reply_deadline`)."""
        wake: int = min(grid.boundary, grid.end, self.reply_deadline(time.perf_counter_ns()))
        for conn in self._timers:
            wake = min(wake, conn.retry_at)
        return wake

    def _housekeeping(self, grid: IntervalGrid, now: int) -> tuple[int, bool] | None:
        """Roll every interval that ended, fire due reconnections. At the planned end, the
        last interval (index, complete), not reported yet: the drain adds to it."""
        ended = grid.roll(now)
        final = ended.pop() if grid.over else None
        for index, complete in ended:
            self._rolling.append(self.recorder.packing(self._take(index, complete=complete)))
        if final is not None:
            return final
        self._expire(now)
        if self._timers:
            due = [conn for conn in self._timers if conn.retry_at <= now]
            for conn in due:
                self._timers.remove(conn)
                self._connect(conn)
        return None

    def _drain_start(self) -> None:
        """Stop everything but the batches in flight: connections still (re)connecting are
        closed and never retried."""
        self._timers.clear()
        for conn in self.connections:
            if conn.state != READY:
                self._drop(conn)

    def _answered(self) -> bool:
        """No batch is in flight any more."""
        return all(conn.batch is None for conn in self.connections)

    def _drained(self, last: tuple[int, bool], now: int) -> None:
        """The drain is over: what is still unanswered is a ``timeout`` error; the last
        interval reported, late replies included."""
        unanswered = sum(conn.in_flight for conn in self.connections)
        if unanswered:
            self.recorder.count_error(ERROR_TIMEOUT, unanswered)
        index, complete = last
        self.report_interval(index, complete=complete, now=now)

    def report_interval(self, index: int, *, complete: bool, now: int | None = None) -> None:
        """Send interval ``index`` now, after those still being packed."""
        self._flush_rolls()
        self._send_interval(
            self.recorder.packing(self._take(index, complete=complete, now=now)).finish())

    def _take(self, index: int, *, complete: bool, now: int | None = None,
              lateness: ScheduleLateness | None = None) -> IntervalCounts:
        """Interval ``index`` taken from the recorder (the next starts empty); a reply still
        awaited counts in its gap up to ``now``."""
        clock = time.perf_counter_ns() if now is None else now
        for conn in self.connections:
            if conn.batch is not None:
                self.recorder.note_gap(clock - conn.last_reply_ns)
        return self.recorder.take(index, complete=complete, lateness=lateness, swap=True)

    def _roll_step(self) -> None:
        """One slice of the oldest interval's packing; sent once it is done (in order)."""
        packing = self._rolling[0]
        if packing.step():
            self._rolling.popleft()
            self._send_interval(packing.result())

    def _flush_rolls(self) -> None:
        """Finish and send every interval still being packed."""
        while self._rolling:
            self._send_interval(self._rolling.popleft().finish())

    def _send_interval(self, data: CountedInterval) -> None:
        self.channel.send({"type": "interval_counts", "interval": data.to_json()})
