"""The inventory's field types: durations, ports, names, addresses, and the checks they run.

Each is an ``Annotated`` type whose validators give the one-line reason a value is refused;
the models in :mod:`coordinator.inventory.schema` are built from them.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, ValidationInfo

from coordinator.core.durations import format_duration, parse_duration

_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_DURATION_EXAMPLES = "must be a duration like 500ms, 5s, 2m or 1h30m"


FROM_TEXT = {"from_text": True}
"""Validation context for data read from a file: there, a bare number is a mistake."""


def _duration(value: object, info: ValidationInfo) -> object:
    """Text like ``5s`` from files; seconds as numbers from Python code."""
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):
        raise ValueError("must be a duration like 5s or 2m")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(_DURATION_EXAMPLES)
        if not (info.context or {}).get("from_text"):
            return float(value)
        raise ValueError(f"must be a duration with a unit, like {value}s")
    raise ValueError(_DURATION_EXAMPLES)


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("must be 1..65535")
    return value


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _address(value: str) -> str:
    """An IPv4/IPv6 address or a DNS name; rejects things like ``999.1.1.1`` or ``a b``."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return value
    labels = value.rstrip(".").split(".")
    if (
        len(value) <= 253
        and all(_HOSTNAME_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return value
    raise ValueError("must be an IP address or a DNS host name")


def _ip_address(value: str) -> str:
    """An IPv4/IPv6 address (a socket binds to it: no DNS name)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IP address") from None
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def within(low: float, high: float | None = None, why: str = "") -> Callable[[float], float]:
    """A check that a duration lies in ``[low, high]``; ``why`` ends the message."""

    def check(value: float) -> float:
        if value < low:
            raise ValueError(f"must be at least {format_duration(low)}{why}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {format_duration(high)}{why}")
        return value

    return check


def whole_seconds(value: float) -> float:
    if value != int(value):
        raise ValueError("must be whole seconds (netperf -l counts seconds)")
    return value


Duration = Annotated[
    float,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
Port = Annotated[int, AfterValidator(_port)]
Name = Annotated[str, AfterValidator(_name)]
Address = Annotated[str, AfterValidator(_address)]
IPAddress = Annotated[str, AfterValidator(_ip_address)]
Role = Literal["client", "server"]
