"""One load process of the builtin driver: N connections to the target, one closed loop.

The agent starts it with the kit (:mod:`agent.drivers.kit.child`: a fresh interpreter that
dies with the agent, configure / ready / start / stop over its channel) and runs it on the T0
grid (:mod:`agent.drivers.kit.timed`); this module is the RESP load itself.

The loop (:meth:`Worker.loop`) is one ``epoll`` over raw non-blocking sockets, a
``hiredis.Reader`` per connection: each connection sends a batch of ``pipeline`` requests and
sends the next as soon as every reply of the batch arrived. A reply's latency is the time from
its batch's send to the ``recv`` that brought it (``perf_counter_ns``); replies read together
share it, so they are counted together. Error replies are counted by type and left out of the
histograms; a connection that fails counts its lost requests as ``connection`` errors and
reconnects (:mod:`agent.drivers.resp_connection`) while the others go on.

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

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import hiredis

from agent.drivers.channel import Channel
from agent.drivers.cluster_mix import ClusterMix
from agent.drivers.cluster_slots import SlotMap, parse_redirection
from agent.drivers.errors import KIND_CONFIG, KIND_INTERNAL, KIND_SERVER, DriverError
from agent.drivers.kit.child import child_main
from agent.drivers.kit.recorder import LoadRecorder
from agent.drivers.kit.timed import COMPLETED, STOPPED, IntervalGrid, run_timed, stop_requested
from agent.drivers.resp import Batch, RequestMix, error_type
from agent.drivers.resp_connection import (
    IN,
    OUT,
    READ_EVENTS,
    READY,
    RECV_SIZE,
    Connection,
    RespConnections,
    exchange,
)
from agent.drivers.spec import Target, Timeline, parse_target
from agent.histograms import HistogramParams

__all__ = ["MODULE", "PRELOAD_BATCH", "RECV_SIZE", "Worker", "WorkerConfig", "main"]

#: The module the agent's load processes run (``main``).
MODULE: Final = "agent.drivers.worker"
#: Time the server has to answer one preload batch.
PRELOAD_REPLY_TIMEOUT = 60.0
#: SET commands per preload batch.
PRELOAD_BATCH = 1000
#: The error type of a request still unanswered when the end-of-phase drain limit passed.
ERROR_TIMEOUT: Final = "timeout"


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
        )


# --- entry point ------------------------------------------------------------------------------


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
        super().__init__(
            config.target,
            config.connections,
            LoadRecorder(config.histogram, RequestMix.commands, config.timeline),
        )
        self.config = config
        self.channel = channel
        self.cluster: ClusterMix | None = None
        self.mix = RequestMix(
            keyspace=config.keyspace,
            set_ratio=config.set_ratio,
            value_size=config.value_size,
            pipeline=config.pipeline,
            seed=config.seed,
        )

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
        if self.config.preload is not None:
            first, end = self.config.preload
            if self.cluster is not None:
                self._preload_cluster(self.cluster, first, end)
            else:
                self._preload(self.connections[0], first, end)
        self.set_nonblocking()
        self._open_poller(self.channel.fileno())  # set-up done before T0, not at it
        return len(self.connections)

    def _route(self, slots: SlotMap) -> None:
        """A cluster: each connection draws the keys its primary serves."""
        config = self.config
        self.cluster = ClusterMix(keyspace=config.keyspace, set_ratio=config.set_ratio,
                                  value_size=config.value_size, pipeline=config.pipeline,
                                  seed=config.seed, slots=slots)
        empty = self.cluster.empty_nodes()
        if empty:
            raise DriverError(KIND_CONFIG, f"keyspace {config.keyspace} is too small for the "
                              f"cluster: primary {slots.nodes[empty[0]].endpoint} serves none "
                              "of its keys")
        for conn in self.connections:
            conn.next_batch = self.cluster.stream(conn.node)

    def _preload_cluster(self, cluster: ClusterMix, first: int, end: int) -> None:
        """Each primary's keys of ``[first, end)`` through a connection to it."""
        for node in range(len(cluster.nodes)):
            conn = next(conn for conn in self.connections if conn.node == node)
            sock = conn.sock
            if sock is None:
                raise DriverError(KIND_INTERNAL, "preload without a connection")
            sock.settimeout(PRELOAD_REPLY_TIMEOUT)
            endpoint = cluster.nodes[node].endpoint
            for count, payload in cluster.preload_batches(node, first, end, PRELOAD_BATCH):
                for reply in exchange(sock, payload, count, endpoint):
                    if isinstance(reply, hiredis.ReplyError):
                        raise DriverError(
                            KIND_SERVER, f"preloading keys on {endpoint} failed: {reply}")

    def _redirected(self, message: str) -> None:
        """A ``MOVED`` reply moves its slot to the node it names (a known primary)."""
        cluster = self.cluster
        if cluster is None:
            return
        redirection = parse_redirection(message, self.target.address)
        if redirection is None or redirection.kind != "MOVED":
            return
        if redirection.node in cluster.nodes:
            cluster.move(redirection.slot, cluster.nodes.index(redirection.node))

    def _preload(self, conn: Connection, first: int, end: int) -> None:
        sock = conn.sock
        if sock is None:
            raise DriverError(KIND_INTERNAL, "preload without a connection")
        sock.settimeout(PRELOAD_REPLY_TIMEOUT)
        endpoint = self.target.endpoint
        for batch_start, payload in zip(
            range(first, end, PRELOAD_BATCH),
            self.mix.preload_batches(first, end, PRELOAD_BATCH),
            strict=True,
        ):
            count = min(PRELOAD_BATCH, end - batch_start)
            for reply in exchange(sock, payload, count, endpoint):
                if isinstance(reply, hiredis.ReplyError):
                    raise DriverError(KIND_SERVER, f"preloading keys on {endpoint} failed: {reply}")

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
        buckets = [recorder.bucket(name) for name in RequestMix.commands]
        reply_error = hiredis.ReplyError
        buffer = self._buffer  # one receive buffer: hiredis copies what it is fed
        requests = bytes_in = bytes_out = gap = 0
        last: tuple[int, bool] | None = None  # the last interval, reported after the drain
        drain_end = grid.end + self.config.timeline.drain_ns
        wake = self._wake(grid)
        while True:
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
            for fd, events in poll(timeout):
                conn = by_fd.get(fd)
                if conn is None:
                    if fd == control_fd:
                        recorder.requests += requests
                        recorder.bytes_received += bytes_in
                        recorder.bytes_sent += bytes_out
                        recorder.note_gap(gap)
                        requests = bytes_in = bytes_out = gap = 0
                        if stop_requested(self.channel):
                            if last is not None:  # the drain is cut short
                                self.report_interval(last[0], complete=False)
                            return STOPPED
                    continue
                if conn.state:  # not READY: connecting or authenticating
                    self._advance(conn, events)
                    wake = self._wake(grid)
                    continue
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
                received_ns = perf()
                bytes_in += size
                conn.feed(buffer, 0, size)
                gets = conn.gets
                first = done = conn.received
                bad: list[tuple[int, Any]] | None = None
                while (reply := gets()) is not False:
                    if reply.__class__ is reply_error:
                        if bad is None:
                            bad = [(done, reply)]
                        else:
                            bad.append((done, reply))
                    done += 1
                if done == first:
                    continue
                waited = received_ns - conn.last_reply_ns
                if waited > gap:  # noqa: PLR1730 - a call to max() per read costs more
                    gap = waited
                conn.last_reply_ns = received_ns
                batch = conn.batch
                if batch is None:  # replies nobody asked for: the server is confused
                    self._fail(conn)
                    wake = self._wake(grid) if last is None else now
                    continue
                requests += done - first
                latency = (received_ns - conn.sent_ns + 500) // 1000 or 1  # nearest µs
                wanted = len(batch.kinds)
                if bad is None and first == 0 and done == wanted:
                    counts: Sequence[int] = batch.counts
                else:
                    counts = self._count(batch, first, done, bad)
                for kind, count in enumerate(counts):
                    if count:
                        bucket = buckets[kind]
                        bucket[latency] = bucket.get(latency, 0) + count
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

    def _count(
        self, batch: Batch, first: int, done: int, bad: list[tuple[int, Any]] | None
    ) -> list[int]:
        """Replies per command among replies ``[first, done)`` of ``batch``, error replies
        left out (and counted by type)."""
        kinds = batch.kinds[first:done]
        counts = [kinds.count(kind) for kind in range(len(batch.counts))]
        for position, reply in bad or ():
            counts[batch.kinds[position]] -= 1
            kind = error_type(str(reply))
            self.recorder.count_error(kind)
            if kind == "MOVED":
                self._redirected(str(reply))
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
        """The next perf-clock instant the loop must act at: a boundary or a reconnection."""
        wake: int = min(grid.boundary, grid.end)
        for conn in self._timers:
            wake = min(wake, conn.retry_at)
        return wake

    def _housekeeping(self, grid: IntervalGrid, now: int) -> tuple[int, bool] | None:
        """Roll every interval that ended, fire due reconnections. At the planned end, the
        last interval (index, complete), not reported yet: the drain adds to it."""
        ended = grid.roll(now)
        final = ended.pop() if grid.over else None
        for index, complete in ended:
            self.report_interval(index, complete=complete)
        if final is not None:
            return final
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
        """Send interval ``index``; a reply still awaited counts in its gap up to ``now``."""
        clock = time.perf_counter_ns() if now is None else now
        for conn in self.connections:
            if conn.batch is not None:
                self.recorder.note_gap(clock - conn.last_reply_ns)
        data = self.recorder.roll(index, complete=complete)
        self.channel.send({"type": "interval", "interval": data.to_json()})
