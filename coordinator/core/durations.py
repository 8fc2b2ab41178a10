"""Durations as people write them in an inventory: ``500ms``, ``5s``, ``2m``, ``1h30m``.

Pure parsing and formatting. Arithmetic is decimal, so ``10995ms`` is exactly the float
``10.995`` and every float formats to text that parses back to the same float: an inventory
dumps and reloads unchanged.
"""

from __future__ import annotations

import re
from decimal import Decimal

_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+")
MAX_SECONDS = 7 * 24 * 3600
RESOLUTION = Decimal("0.001")
"""Durations are whole milliseconds: no part of a run is timed finer (``0.0000001ms`` is a
typo, not a request)."""


def parse_duration(text: str) -> float:
    """Return the seconds in ``text``; raise ``ValueError`` with a message fit for a user."""
    compact = text.strip().replace(" ", "")
    if not compact or not _WHOLE.fullmatch(compact):
        raise ValueError("must be a duration like 500ms, 5s, 2m or 1h30m")
    seconds = sum(
        (Decimal(number) * _UNITS[unit] for number, unit in _PART.findall(compact)), Decimal(0)
    )
    if seconds > MAX_SECONDS:
        raise ValueError("must be at most 7 days")
    if seconds % RESOLUTION:
        raise ValueError("must be a whole number of milliseconds")
    return float(seconds)


def format_duration(seconds: float) -> str:
    """Write ``seconds`` back as a duration string that ``parse_duration`` reads exactly."""
    exact = Decimal(repr(float(seconds)))
    if exact == 0:
        return "0s"
    for unit in ("h", "m", "s"):
        scale = _UNITS[unit]
        if exact >= scale and exact % scale == 0:
            return f"{int(exact / scale)}{unit}"
    milliseconds = exact * 1000
    if milliseconds == milliseconds.to_integral_value():
        return f"{int(milliseconds)}ms"
    return f"{exact:f}s"
