"""RESP (the Redis protocol) for the builtin driver: commands out, error types in. Pure.

Replies are parsed by ``hiredis.Reader`` (C); this module encodes requests, classifies error
replies, and produces the request stream of a load (:class:`RequestMix`).

Requests travel in batches: a batch is what one connection sends at once (``pipeline``
requests), pre-encoded as one ``bytes``, with the command of each request as a small integer
(an index into :attr:`RequestMix.commands`) so replies can be attributed to commands, and the
number of requests per command (the common case of a batch answered at once costs one lookup).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

#: Longest error type kept; anything longer or odd is counted as ``ERR``.
MAX_ERROR_TYPE = 32
_ERROR_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

#: The request pool (see :class:`RequestMix`) holds at most this many requests...
POOL_MAX_REQUESTS: Final = 1 << 18
#: ... and is used only if it can hold this many requests per key of the keyspace.
POOL_REQUESTS_PER_KEY: Final = 2
#: Fewest requests in a pool (a tiny keyspace still needs a varied SET/GET sequence).
POOL_MIN_REQUESTS: Final = 1 << 14

# ``GET key`` and ``SET key value`` with the key (length, bytes) and the encoded value argument
# still to fill in: formatting these costs less than encode_command in the request stream.
_GET_TEMPLATE: Final = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n"
_SET_TEMPLATE: Final = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n%s"


def encode_command(*args: bytes | str | int) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def auth_command(username: str | None, password: str | None) -> bytes | None:
    """``AUTH [username] password``, or None when there is no password."""
    if password is None:
        return None
    if username is None:
        return encode_command("AUTH", password)
    return encode_command("AUTH", username, password)


def error_type(message: str) -> str:
    """The type of an error reply: its first word (``WRONGTYPE``, ``OOM``, ``NOAUTH``...),
    as Redis uses it; ``ERR`` when the first word is not a plausible type."""
    word = message.split(None, 1)[0] if message.strip() else ""
    if len(word) <= MAX_ERROR_TYPE and _ERROR_TYPE.fullmatch(word):
        return word.upper()
    return "ERR"


def key_name(n: int) -> bytes:
    return b"key:%d" % n


@dataclass(frozen=True)
class Batch:
    """Requests sent together: their bytes, each one's command index, and per-command counts."""

    payload: bytes
    kinds: tuple[int, ...]
    counts: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.kinds)


class RequestMix:
    """The closed-loop SET/GET mix: ``set_ratio`` of SETs of ``value_size`` bytes, the rest
    GETs, keys ``key:<n>`` with ``n`` uniform in ``[0, keyspace)``, deterministic from ``seed``.

    Encoding costs a few hundred nanoseconds per request in Python, a large share of the load
    loop's budget. When the keyspace is small enough (``POOL_REQUESTS_PER_KEY`` requests per key
    fit in ``POOL_MAX_REQUESTS``), batches are drawn at random from a pool encoded once;
    each request of the pool is uniform over the keyspace and over the mix. Beyond that, every
    batch is encoded afresh (exact, slower; about 20 MB per process is the pool's price).
    """

    commands: Final = ("GET", "SET")
    GET: Final = 0
    SET: Final = 1

    def __init__(
        self,
        *,
        keyspace: int,
        set_ratio: float,
        value_size: int,
        pipeline: int,
        seed: int,
    ) -> None:
        if keyspace < 1 or pipeline < 1 or value_size < 0 or not 0.0 <= set_ratio <= 1.0:
            raise ValueError("invalid request mix")
        self.keyspace = keyspace
        self.set_ratio = set_ratio
        self.pipeline = pipeline
        self._random = random.Random(seed).random  # noqa: S311 (a load, not a secret)
        self._value_arg = b"$%d\r\n%s\r\n" % (value_size, make_value(value_size))
        self._pool = [self.encode_batch() for _ in range(pool_batches(keyspace, pipeline))]

    @property
    def pooled(self) -> bool:
        return bool(self._pool)

    def next_batch(self) -> Batch:
        """The next batch of ``pipeline`` requests."""
        pool = self._pool
        if pool:
            return pool[int(self._random() * len(pool))]
        return self.encode_batch()

    def encode_batch(self) -> Batch:
        """A fresh random batch."""
        rnd = self._random
        keyspace = self.keyspace
        ratio = self.set_ratio
        value_arg = self._value_arg
        set_template, get_template = _SET_TEMPLATE, _GET_TEMPLATE  # locals: read per request
        parts = []
        kinds = []
        for _ in range(self.pipeline):
            key = b"key:%d" % int(rnd() * keyspace)  # key_name, inlined: no call per request
            if rnd() < ratio:
                parts.append(set_template % (len(key), key, value_arg))
                kinds.append(self.SET)
            else:
                parts.append(get_template % (len(key), key))
                kinds.append(self.GET)
        sets = sum(kinds)
        return Batch(b"".join(parts), tuple(kinds), (len(kinds) - sets, sets))

    def preload_batches(self, first: int, end: int, size: int) -> Iterator[bytes]:
        """SET of every key in ``[first, end)``, ``size`` commands per batch, one batch at a
        time: a whole keyspace share of values at once could exceed the host's memory."""
        value_arg = self._value_arg
        for start in range(first, end, size):
            yield b"".join(
                _SET_TEMPLATE % (len(key), key, value_arg)
                for key in map(key_name, range(start, min(end, start + size)))
            )


def pool_batches(keyspace: int, pipeline: int) -> int:
    """Batches in the request pool of a :class:`RequestMix`; 0 when the keyspace is too large
    for a pool (every batch is then encoded afresh)."""
    pool_requests = max(POOL_MIN_REQUESTS, POOL_REQUESTS_PER_KEY * keyspace)
    if pool_requests > POOL_MAX_REQUESTS:
        return 0
    return -(-pool_requests // pipeline)


def make_value(size: int) -> bytes:
    """A value of ``size`` bytes (printable, so that a human reading the keys sees text)."""
    pattern = b"coord-builtin-value:"
    return (pattern * (size // len(pattern) + 1))[:size]
