"""The builtin driver's keyspace: how many keys, their names, and which key each request uses.
Pure (no I/O): a :class:`KeyPicker` draws key numbers from a seeded ``random.Random``.

Key ``n`` is named ``prefix + str(n)`` (``key:0`` .. ``key:<size-1>`` by default). The
distributions (``Distribution.kind``):

* ``uniform``: every key equally likely;
* ``sequential``: ``start, start+1, ...`` wrapping at ``size`` (each load process starts at its
  own share of the keyspace, so processes do not walk in step);
* ``zipf``: key ``n`` (rank ``n+1``) drawn with probability proportional to ``1/(n+1)^s``:
  key 0 is the hottest. Exact, in constant memory, by rejection-inversion (Hörmann and
  Derflinger, 1996; the variant of Apache Commons RNG), so 10 million keys cost nothing to set up;
* ``gaussian``: a normal law of mean ``mean * size`` and standard deviation ``sd * size``
  (both fractions of the keyspace), truncated to the keyspace (draws outside are redrawn);
* ``hotset``: a share ``hot_requests`` of the requests goes to the first ``hot_keys`` share of
  the keys (at least one key), uniformly; the rest to the other keys, uniformly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

KINDS: Final = ("uniform", "sequential", "zipf", "gaussian", "hotset")
#: Zipf exponents accepted: above 0 (0 would be uniform: use ``uniform``), at most 10.
ZIPF_S_MAX: Final = 10.0
#: Keys, at most (the inventory's limit on ``keyspace``).
SIZE_MAX: Final = 10**10


@dataclass(frozen=True)
class Distribution:
    """Which key a request uses; the parameters of the other kinds stay None."""

    kind: str = "uniform"
    s: float | None = None
    mean: float | None = None
    sd: float | None = None
    hot_requests: float | None = None
    hot_keys: float | None = None

    def to_json(self) -> dict[str, object]:
        fields = {"kind": self.kind, "s": self.s, "mean": self.mean, "sd": self.sd,
                  "hot_requests": self.hot_requests, "hot_keys": self.hot_keys}  # fmt: skip
        return {name: value for name, value in fields.items() if value is not None}


UNIFORM: Final = Distribution()

_PARAMETERS: Final = {
    "uniform": (),
    "sequential": (),
    "zipf": ("s",),
    "gaussian": ("mean", "sd"),
    "hotset": ("hot_requests", "hot_keys"),
}


def distribution_problem(distribution: Distribution) -> str | None:
    """Why ``distribution`` cannot be used, naming the field (``s: ...``); None if it can."""
    kind = distribution.kind
    if kind not in _PARAMETERS:
        return f"kind: {kind!r} is not one of {', '.join(KINDS)}"
    wanted = _PARAMETERS[kind]
    for name in ("s", "mean", "sd", "hot_requests", "hot_keys"):
        value = getattr(distribution, name)
        if name in wanted and value is None:
            return f"{name}: required with kind {kind}"
        if name not in wanted and value is not None:
            return f"{name}: not a parameter of kind {kind}"
    if kind == "zipf" and not 0.0 < (distribution.s or 0.0) <= ZIPF_S_MAX:
        return f"s: must be above 0 and at most {ZIPF_S_MAX:g}, got {distribution.s}"
    if kind == "gaussian":
        if not 0.0 <= (distribution.mean or 0.0) <= 1.0:
            return f"mean: a fraction of the keyspace, 0..1, got {distribution.mean}"
        if not 0.0 < (distribution.sd or 0.0) <= 10.0:
            return f"sd: a fraction of the keyspace, above 0 and at most 10, got {distribution.sd}"
    if kind == "hotset":
        if not 0.0 <= (distribution.hot_requests or 0.0) <= 1.0:
            return (
                f"hot_requests: a fraction of the requests, 0..1, got"
                f"  {distribution.hot_requests}"
            )
        if not 0.0 < (distribution.hot_keys or 0.0) < 1.0:
            return (
                f"hot_keys: a fraction of the keys, above 0 and below 1, got"
                f" {distribution.hot_keys}"
            )
    return None


@dataclass(frozen=True)
class Keyspace:
    """``size`` keys named ``prefix + n``, used following ``distribution``."""

    size: int
    prefix: str = "key:"
    distribution: Distribution = UNIFORM

    def __post_init__(self) -> None:
        if not 1 <= self.size <= SIZE_MAX:
            raise ValueError(f"keyspace: 1..{SIZE_MAX} keys, got {self.size}")
        problem = distribution_problem(self.distribution)
        if problem is not None:
            raise ValueError(f"distribution.{problem}")

    def name(self, n: int) -> bytes:
        return self.prefix.encode() + b"%d" % n

    def picker(self, random: Callable[[], float], *, start: int = 0) -> Callable[[], int]:
        """A function drawing key numbers in ``[0, size)``; ``random`` gives floats in
        ``[0, 1)`` (``random.Random(seed).random``); ``start``: a sequential walk's first key."""
        size = self.size
        dist = self.distribution
        if dist.kind == "uniform":
            return lambda: int(random() * size)
        if dist.kind == "sequential":
            return _sequential(size, start % size)
        if dist.kind == "zipf":
            return ZipfSampler(size, dist.s or 1.0, random).sample
        if dist.kind == "gaussian":
            return _gaussian(size, (dist.mean or 0.0) * size, (dist.sd or 0.0) * size, random)
        return _hotset(size, dist.hot_requests or 0.0, hot_key_count(size, dist.hot_keys or 0.0),
                       random)  # fmt: skip


def hot_key_count(size: int, hot_keys: float) -> int:
    """Keys of the hot set: the ``hot_keys`` share of ``size``, rounded, at least 1."""
    return max(1, min(size, round(size * hot_keys)))


def _sequential(size: int, start: int) -> Callable[[], int]:
    state = [start]

    def pick() -> int:
        n = state[0]
        state[0] = n + 1 if n + 1 < size else 0
        return n

    return pick


def _gaussian(size: int, mean: float, sd: float, random: Callable[[], float]) -> Callable[[], int]:
    """Box-Muller on ``random`` (so the stream depends on the seed alone), redrawn outside."""

    def pick() -> int:
        while True:
            u = random()
            n = math.floor(mean + sd * math.sqrt(-2.0 * math.log(1.0 - u))
                           * math.cos(2.0 * math.pi * random()))  # fmt: skip
            if 0 <= n < size:
                return n

    return pick


def _hotset(
    size: int, hot_requests: float, hot: int, random: Callable[[], float]
) -> Callable[[], int]:
    cold = size - hot

    def pick() -> int:
        if cold == 0 or random() < hot_requests:
            return int(random() * hot)
        return hot + int(random() * cold)

    return pick


class ZipfSampler:
    """Ranks ``1..n`` with P(k) ∝ k^-s, returned as key numbers ``k - 1``: rejection-inversion
    sampling (W. Hörmann, G. Derflinger, "Rejection-inversion to generate variates from
    monotone discrete distributions", 1996), as Apache Commons RNG's
    ``RejectionInversionZipfSampler``: a few logarithms per draw, no table."""

    def __init__(self, n: int, s: float, random: Callable[[], float]) -> None:
        self.n = n
        self.s = s
        self._random = random
        self._h_integral_x1 = self._h_integral(1.5) - 1.0
        self._h_integral_n = self._h_integral(n + 0.5)
        self._s_bound = 2.0 - self._h_integral_inverse(self._h_integral(2.5) - self._h(2.0))

    def sample(self) -> int:
        h_n = self._h_integral_n
        span = self._h_integral_x1 - h_n
        while True:
            u = h_n + self._random() * span
            x = self._h_integral_inverse(u)
            k = int(x + 0.5)
            if k < 1:
                k = 1
            elif k > self.n:
                k = self.n
            if k - x <= self._s_bound or u >= self._h_integral(k + 0.5) - self._h(k):
                return k - 1

    def _h(self, x: float) -> float:
        return math.exp(-self.s * math.log(x))

    def _h_integral(self, x: float) -> float:
        log_x = math.log(x)
        return _expm1_over((1.0 - self.s) * log_x) * log_x

    def _h_integral_inverse(self, x: float) -> float:
        t = x * (1.0 - self.s)
        t = max(t, -1.0)  # rounding at the lower end
        return math.exp(_log1p_over(t) * x)


def _expm1_over(x: float) -> float:
    """``expm1(x) / x``, continuous at 0."""
    if abs(x) > 1e-8:
        return math.expm1(x) / x
    return 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))


def _log1p_over(x: float) -> float:
    """``log1p(x) / x``, continuous at 0."""
    if abs(x) > 1e-8:
        return math.log1p(x) / x
    return 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
