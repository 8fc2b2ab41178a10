"""RESP (the Redis protocol) for the builtin driver: commands out, error types in. Pure.

Replies are parsed by ``hiredis.Reader`` (C); this module encodes requests, classifies error
replies, and produces the request stream of a load (:class:`RequestMix`).

Requests travel in batches: a batch is what one connection sends at once (``pipeline``
requests), pre-encoded as one ``bytes``, with the command of each request as a small integer
(an index into :attr:`RequestMix.commands`) so replies can be attributed to commands, and the
number of requests per command (the common case of a batch answered at once costs one lookup).
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from agent.drivers.keyspace import Keyspace
from agent.drivers.templates import (
    CommandTemplate,
    Expander,
    PreloadCommand,
    default_templates,
    make_value,
)

#: Longest error type kept; anything longer or odd is counted as ``ERR``.
MAX_ERROR_TYPE = 32
_ERROR_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

#: The request pool (see :class:`RequestMix`) holds at most this many requests...
POOL_MAX_REQUESTS: Final = 1 << 18
#: ... and at most this many bytes; below this many requests per key it is refreshed.
POOL_MAX_BYTES: Final = 64 * 1024 * 1024
POOL_REQUESTS_PER_KEY: Final = 2
#: A refreshed pool has one batch in this many re-encoded (see :class:`RequestMix`).
REFRESH_EVERY: Final = 64
#: Fewest requests in a pool (a tiny keyspace still needs a varied SET/GET sequence).
POOL_MIN_REQUESTS: Final = 1 << 14
#: Largest value whose batches carry their expected replies (``Batch.replies``): each GET's
#: expected reply holds a copy of the value, so a pool of larger values would double in size.
EXPECTED_REPLIES_MAX_VALUE: Final = 128

# ``GET key`` and ``SET key value`` with the key (length, bytes) and the encoded value argument
# still to fill in: formatting these costs less than encode_command in the request stream.
_SET_TEMPLATE: Final = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n%s"
_GET_TEMPLATE: Final = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n"


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


#: ``Batch.tally`` by ``counts``: few distinct counts recur across a pool's batches.
_TALLIES: dict[tuple[int, ...], tuple[tuple[int, int], ...]] = {}
_TALLIES_KEPT: Final = 4096


@dataclass(slots=True)
class Batch:
    """Requests sent together: their bytes, each reply's command index (``HIDDEN``, -1: a
    reply recorded under no command, inside a MULTI block), per-command counts, and each
    reply's expected-type check (None when no template expects a type). Never changed once
    made (not frozen: a frozen dataclass costs five times as much to make, and a pool holds up
    to 2¹⁸ of them).

    ``size`` (the replies awaited) and ``tally`` (the ``(command, count)`` pairs of the
    commands it holds) are derived once here, for the load loop: a batch is built once and
    answered many times (the request pool), and the loop reads them for every reply it gets."""

    payload: bytes
    kinds: tuple[int, ...]
    counts: tuple[int, ...]
    checks: tuple[Callable[[Any], bool] | None, ...] | None = None
    replies: bytes | None = field(default=None, compare=False)
    """The replies the batch gets, byte for byte, when every request succeeds and every GET
    finds the mix's value (:func:`expected_replies`); None when they are not known (the
    templates) or not kept (values above ``EXPECTED_REPLIES_MAX_VALUE``). A read that is
    exactly these bytes is counted without parsing a reply. Not compared: it follows from the
    requests, and None only says it was not worked out."""
    size: int = field(init=False, repr=False)
    tally: tuple[tuple[int, int], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.size = len(self.kinds)
        tally = _TALLIES.get(self.counts)
        if tally is None:
            tally = tuple((kind, count) for kind, count in enumerate(self.counts) if count)
            if len(_TALLIES) < _TALLIES_KEPT:
                _TALLIES[self.counts] = tally
        self.tally = tally

    def __len__(self) -> int:
        return self.size


class RequestMix:
    """The requests of a load process: a weighted mix of command templates
    (:mod:`agent.drivers.templates`; by default ``set_ratio`` of SETs of ``value_size`` bytes,
    the rest GETs) over a keyspace (:mod:`agent.drivers.keyspace`; by default ``key:<n>`` with
    ``n`` uniform in ``[0, keyspace)``), deterministic from ``seed``.

    Encoding costs a microsecond or more per request in Python, a large share of the load
    loop's budget, so batches come from a **request pool** encoded at construction
    (``pool_batches``: at most ``POOL_MAX_REQUESTS`` requests and ``POOL_MAX_BYTES``), walked
    in order, round and round (:attr:`next_batch`). Each pooled request is an independent draw
    of the mix and the keyspace, so walking the pool keeps every distribution; walking it in the
    order it was built reads memory in order, and the walk is a C iterator (no Python frame per
    batch: bench/bench_builtin_driver.py, docs/architecture.md). When the pool holds fewer
    than ``POOL_REQUESTS_PER_KEY`` requests per key (a large keyspace), it is **refreshed**: one
    pooled batch in ``REFRESH_EVERY`` is replaced by a fresh one as the walk reaches it (a
    different one on each round), so the keys used keep covering the keyspace while only that
    share of the batches is encoded during the load (the pool's own size, not a small one:
    walked in order, a large pool costs the loop no more, and the fewer batches re-encoded the
    less the refresh costs it; docs/architecture.md). Requests that must come in order (a
    sequential keyspace, a ``{seq}`` counter) and requests too large for a pool of
    ``POOL_MIN_REQUESTS`` are encoded afresh for every batch.
    """

    GET: Final = 0
    SET: Final = 1

    def __init__(
        self,
        *,
        keyspace: int | Keyspace,
        set_ratio: float = 0.0,
        value_size: int,
        pipeline: int,
        seed: int,
        templates: Sequence[CommandTemplate] | None = None,
        key_start: int = 0,
        read_file: Callable[[str], bytes] | None = None,
    ) -> None:
        if isinstance(keyspace, int):
            if keyspace < 1:
                raise ValueError("invalid request mix")
            keyspace = Keyspace(keyspace)
        if pipeline < 1 or value_size < 0 or not 0.0 <= set_ratio <= 1.0:
            raise ValueError("invalid request mix")
        self.keyspace = keyspace
        self.set_ratio = set_ratio
        self.pipeline = pipeline
        rng = random.Random(seed)  # noqa: S311 (a load, not a secret)
        self._random = rng.random
        self.expander = Expander(
            templates if templates is not None else default_templates(set_ratio),
            keyspace, value_size, rng, read_file or _no_file, key_start,
        )  # fmt: skip
        #: The recorder's commands, by index (a Batch's kinds index them).
        self.commands: tuple[str, ...] = self.expander.commands
        self._value_arg = b"$%d\r\n%s\r\n" % (value_size, make_value(value_size))
        self._expect_replies = value_size <= EXPECTED_REPLIES_MAX_VALUE
        #: At pipeline 1 a SET/GET batch has one of two shapes (kinds, counts, checks, expected
        #: replies), made once and shared: the pool is built in every load process before
        #: every repetition, and making them per batch took half of its 0.58 s of CPU at
        #: 100 000 keys (2.9 s of wall time on a client held to a fifth of a core).
        self._get_shape = self._shape((self.GET,))
        self._set_shape = self._shape((self.SET,))
        self._key_format = keyspace.prefix.encode().replace(b"%", b"%%") + b"%d"
        self._sets_and_gets = templates is None  # formatted in one step, not expanded
        self._checks = any(t.expect is not None for t in self.expander.templates)
        batches = 0
        if not self.expander.fresh_only:
            batches = pool_batches(keyspace.size, pipeline, self._request_bytes())
        covered = batches * pipeline >= POOL_REQUESTS_PER_KEY * keyspace.size
        #: The pool is refreshed as it is used (it cannot hold the keyspace).
        self.refreshed = bool(batches) and not covered
        self._pool = [self.encode_batch() for _ in range(batches)]
        #: The next batch of ``pipeline`` requests (a callable: the load loop calls it once
        #: per batch, so it is the pool's own iterator where it can be).
        self.next_batch: Callable[[], Batch]
        if not self._pool:
            self.next_batch = self.encode_batch
        elif self.refreshed:
            self.next_batch = refreshing_walk(self._pool, self.encode_batch).__next__
        else:
            self.next_batch = itertools.cycle(self._pool).__next__

    @property
    def pooled(self) -> bool:
        return bool(self._pool)

    def encode_batch(self) -> Batch:
        """A fresh random batch."""
        if self._sets_and_gets:
            return self._encode_sets_and_gets()
        expand = self.expander.expand
        parts = []
        kinds: list[int] = []
        checks: list[Any] = []
        for _ in range(self.pipeline):
            payload, request_kinds, request_checks = expand()
            parts.append(payload)
            kinds += request_kinds
            checks += request_checks
        return assemble_batch(parts, kinds, checks, len(self.commands), self._checks)

    def _encode_sets_and_gets(self) -> Batch:
        """:meth:`encode_batch` for the SET/GET mix (no templates given): the requests its two
        templates give, each formatted in one step. Expanding a template costs several calls
        per request, and a refreshed pool encodes one batch in ``REFRESH_EVERY`` during the
        load (bench/bench_builtin_driver.py, 10 million keys)."""
        pick = self.expander.pick_key
        draw = self._random
        gets = self.expander.cumulative[0]  # the same draws as the templates', in order
        key_format = self._key_format
        value_arg = self._value_arg
        if self.pipeline == 1:
            if draw() < gets:
                key = key_format % pick()
                return Batch(_GET_TEMPLATE % (len(key), key), *self._get_shape)
            key = key_format % pick()
            return Batch(_SET_TEMPLATE % (len(key), key, value_arg), *self._set_shape)
        parts = []
        kinds = []
        for _ in range(self.pipeline):
            if draw() < gets:
                key = key_format % pick()
                parts.append(_GET_TEMPLATE % (len(key), key))
                kinds.append(self.GET)
            else:
                key = key_format % pick()
                parts.append(_SET_TEMPLATE % (len(key), key, value_arg))
                kinds.append(self.SET)
        sets = sum(kinds)
        return Batch(b"".join(parts), tuple(kinds), (len(kinds) - sets, sets), None,
                     expected_replies(kinds, value_arg) if self._expect_replies else None)

    def _shape(self, kinds: tuple[int, ...]) -> tuple[Any, ...]:
        """A SET/GET batch's fields after its payload: kinds, counts, checks, expected replies."""
        sets = sum(kinds)
        return (kinds, (len(kinds) - sets, sets), None,
                expected_replies(kinds, self._value_arg) if self._expect_replies else None)

    def _request_bytes(self) -> int:
        """The largest of a few sample requests, bytes (for the pool's size)."""
        sample = random.Random(0)  # noqa: S311 (a size, not a secret)
        probe = Expander(self.expander.templates, self.keyspace, self.expander.value_size,
                         sample, self.expander.read_file)  # fmt: skip
        return max(len(probe.expand()[0]) for _ in range(64))

    def preload_batches(self, first: int, end: int, size: int,
                        command: PreloadCommand | None = None) -> Iterator[bytes]:
        """SET of every key in ``[first, end)`` (or ``command`` for it), ``size`` commands per
        batch, one batch at a time: a whole keyspace share of values at once could exceed the
        host's memory."""
        if command is not None:
            for start in range(first, end, size):
                yield command.batch(range(start, min(end, start + size)))
            return
        value_arg = self._value_arg
        key_format = self._key_format
        for start in range(first, end, size):
            yield b"".join(
                _SET_TEMPLATE % (len(key), key, value_arg)
                for key in [key_format % n for n in range(start, min(end, start + size))]
            )


#: A successful SET's reply.
_OK_REPLY: Final = b"+OK\r\n"


def expected_replies(kinds: Sequence[int], value_arg: bytes) -> bytes:
    """The replies to a SET/GET batch of ``kinds`` (:attr:`RequestMix.GET` or ``SET``) when
    every SET succeeds and every GET finds the value the mix writes (``value_arg``, the value
    as a bulk string, which is how the server returns it): ``Batch.replies``. Against a
    preloaded keyspace nearly every read of a whole batch is these bytes, and comparing them
    costs far less than parsing the replies one by one (docs/architecture.md)."""
    return b"".join([_OK_REPLY if kind == RequestMix.SET else value_arg for kind in kinds])


def refreshing_walk(pool: list[Batch], encode: Callable[[], Batch]) -> Iterator[Batch]:
    """The pool's batches in order, round and round, each ``REFRESH_EVERY``-th replaced by a
    fresh one (``encode``) as the walk reaches it; the replaced position moves by one each
    round, so every ``REFRESH_EVERY`` rounds the whole pool is renewed. Each slice is handed
    on by ``yield from``: the walk's cost per batch stays in C."""
    offset = 0
    while True:
        for start in range(0, len(pool), REFRESH_EVERY):
            index = start + offset
            if index < len(pool):
                pool[index] = encode()
            yield from pool[start:start + REFRESH_EVERY]
        offset = (offset + 1) % REFRESH_EVERY


def _no_file(path: str) -> bytes:
    raise ValueError(f"{{file:{path}}}: no file reader given")


def assemble_batch(parts: list[bytes], kinds: list[int], checks: list[Any], commands: int,
                   keep_checks: bool) -> Batch:
    """A batch of expanded requests: their bytes, each reply's command (-1: a reply no command
    counts, as MULTI's +OK), the replies per command and, when kept, each reply's check."""
    counts = [0] * commands
    for kind in kinds:
        if kind >= 0:
            counts[kind] += 1
    return Batch(b"".join(parts), tuple(kinds), tuple(counts),
                 tuple(checks) if keep_checks else None)


def pool_batches(keyspace: int, pipeline: int, request_bytes: int = 64) -> int:
    """Batches in the request pool of a :class:`RequestMix`; 0 when requests of
    ``request_bytes`` are too large for a useful pool (every batch is then encoded afresh)."""
    by_bytes = POOL_MAX_BYTES // max(1, request_bytes)
    if by_bytes < POOL_MIN_REQUESTS:
        return 0
    pool_requests = min(
        POOL_MAX_REQUESTS, by_bytes, max(POOL_MIN_REQUESTS, POOL_REQUESTS_PER_KEY * keyspace)
    )
    return -(-pool_requests // pipeline)


