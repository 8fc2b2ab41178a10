"""The memory the builtin driver's load processes will need on a client host. Pure.

A load process holds, besides its interpreter (:data:`PROCESS_BASE_BYTES`):

* the SET value, encoded once (building it briefly takes three copies);
* the request pool of its :class:`~agent.drivers.resp.RequestMix` when requests are small
  enough for one: ``pool_batches * pipeline`` requests encoded once, a ``set_ratio`` share of
  them SETs carrying a copy of the value each, at most ``POOL_MAX_BYTES``;
* with values of at most ``EXPECTED_REPLIES_MAX_VALUE`` bytes, each pooled batch's expected
  replies (``Batch.replies``): ``OK`` per SET, a copy of the value per GET (at pipeline 1 the
  batch's one reply is the value's or the ``OK``'s own object: nothing more; measured at
  pipeline 16, 100 000 keys, 32-byte values: 4.7 MiB more RSS);
* while preloading (its first connection, during ``prepare``, with the pool already built):
  a preload batch of ``PRELOAD_BATCH`` SETs as a list of commands and as their join, plus the
  previous batch, still referenced while the next one is built;
* while loading, per connection: its batch in flight (its own when there is no pool), the part
  of it the socket has not taken yet (a copy), and a GET reply being received (hiredis' buffer
  plus the reply object).

Values are counted at their expected share (``set_ratio`` of the requests; at least one SET per
batch in flight when ``set_ratio`` is above 0). The estimate is a little generous on purpose:
it exists to refuse loads that cannot fit (``value_size`` near its 512 MiB limit would
otherwise grow a client by hundreds of MB/s until the host runs out), not to plan to the byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from agent.drivers.resp import EXPECTED_REPLIES_MAX_VALUE, POOL_MAX_BYTES, pool_batches

#: An idle load process: interpreter, hiredis, hdrh, its receive buffer (measured: 24 MiB RSS).
PROCESS_BASE_BYTES: Final = 32 * 1024 * 1024
#: One encoded request beyond its value: key, RESP framing, its entry in the batch's tuple.
REQUEST_OVERHEAD_BYTES: Final = 48
#: One batch beyond its requests: the Batch, its bytes and tuple objects, its pool slot.
BATCH_OVERHEAD_BYTES: Final = 256
#: A reply's RESP framing (``$N\r\n`` and ``\r\n``, or a SET's ``+OK\r\n``), at most.
REPLY_FRAMING_BYTES: Final = 8
#: A ``bytes`` object beyond its bytes.
BYTES_OBJECT_BYTES: Final = 40
#: Share of the host's available memory a load may plan to use (the rest: the OS, the agent,
#: a server sharing the host).
USABLE_SHARE: Final = 0.9


@dataclass(frozen=True)
class LoadShape:
    """What one load process is asked to do, as far as its memory goes."""

    connections: int
    pipeline: int
    set_ratio: float
    keyspace: int
    value_size: int
    preload_keys: int  # keys this process SETs during prepare (0: no preload)
    preload_request: int = 0  # bytes of one preload command (0: a SET of value_size)


def process_bytes(shape: LoadShape, *, preload_batch: int, recv_size: int) -> int:
    """Peak memory of one load process, bytes."""
    value = shape.value_size
    set_bytes = value + REQUEST_OVERHEAD_BYTES
    batches = pool_batches(shape.keyspace, shape.pipeline)  # the most it can hold
    pool_requests = batches * shape.pipeline
    pool = math.ceil(pool_requests * (shape.set_ratio * value + REQUEST_OVERHEAD_BYTES))
    pool = min(pool, POOL_MAX_BYTES) + batches * BATCH_OVERHEAD_BYTES
    if shape.pipeline > 1:  # (one reply: shared)
        # Counted for larger values too, at the largest kept: a bound that never shrinks as
        # the value grows.
        expected_value = min(value, EXPECTED_REPLIES_MAX_VALUE)
        gets = 1.0 - shape.set_ratio
        pool += math.ceil(pool_requests * (gets * (expected_value + REPLY_FRAMING_BYTES)
                                           + shape.set_ratio * REPLY_FRAMING_BYTES))
        pool += batches * BYTES_OBJECT_BYTES
    sets_in_flight = math.ceil(shape.pipeline * shape.set_ratio)
    batch = (
        sets_in_flight * set_bytes + shape.pipeline * REQUEST_OVERHEAD_BYTES + BATCH_OVERHEAD_BYTES
    )
    building = 2 * batch  # a batch's commands, then their join
    preload = 0
    if shape.preload_keys:
        # A batch's commands and their join; from the second batch on, the previous batch is
        # still referenced while the next one is built.
        copies = 3 if shape.preload_keys > preload_batch else 2
        preload = (copies * min(preload_batch, shape.preload_keys)
                   * (shape.preload_request or set_bytes))
    receiving = value + recv_size if shape.set_ratio < 1.0 else 0
    per_connection = 2 * batch + receiving  # its own batch when there is no pool
    running = building + shape.connections * per_connection
    steady = value + pool + max(building, preload, running)
    return PROCESS_BASE_BYTES + max(3 * value, steady)


def load_bytes(shapes: list[LoadShape], *, preload_batch: int, recv_size: int) -> int:
    """Peak memory of every load process of a host, bytes."""
    return sum(
        process_bytes(shape, preload_batch=preload_batch, recv_size=recv_size)
        for shape in shapes
    )


def memory_problem(needed: int, available: int, processes: int) -> str | None:
    """Why a load needing ``needed`` bytes cannot run with ``available`` bytes free; None if
    it fits in :data:`USABLE_SHARE` of them."""
    if needed <= available * USABLE_SHARE:
        return None
    return (
        f"the load needs about {format_bytes(needed)} of memory in {processes} load "
        f"process(es), but this host has {format_bytes(available)} available; lower "
        "value_size, keyspace (a smaller one is pre-encoded), connections or pipeline"
    )


def format_bytes(count: int) -> str:
    """``1.5 GiB``, ``512.0 MiB``: binary units, one decimal."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
