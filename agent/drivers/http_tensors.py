"""Tensors in HTTP request bodies: the ``{tensor:...}`` placeholder and the ``tensor`` body.
Pure (no I/O).

Model servers take a request's input as a JSON array (TF Serving's ``instances``, KServe v2's
``data``, a REST service's feature list) or as raw bytes. A template says only its dtype and
shape; the values are drawn from the load process's random generator:

``{tensor:DTYPE:SHAPE}``         a JSON array of SHAPE (``224x224x3``: nested 224, 224, 3 deep;
                                 ``30``: a flat list of 30), drawn once per load process: every
                                 request carries the same values (a model's latency does not
                                 depend on them), so a large tensor costs nothing per request
``{tensor:DTYPE:SHAPE:random}``  one of up to 1,024 such arrays drawn at start (16 MiB at
                                 most), picked at random for every request

Float dtypes give values in ``[0, 1)``, unsigned ones integers in ``0..255``, signed ones
``-128..127``, ``bool`` true/false. In a JSON body the placeholder is a whole string value,
``"data": "{tensor:float32:1x30:random}"``, and the array replaces the string, quotes included,
so the template stays valid JSON (and YAML). A ``tensor`` body
(``{"tensor": "float32:1x3x224x224"}``) is the tensor's raw little-endian bytes, drawn once.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from random import Random
from typing import Final

from agent.drivers.templates import DTYPES, MAX_BLOB, tensor_shape

#: Most values one JSON tensor may hold (224x224x3 is 150,528; ~9 bytes each as text).
MAX_JSON_VALUES: Final = 1 << 24
#: The placeholder in a text body; in a JSON body's serialised text, :data:`QUOTED`.
PLACEHOLDER: Final = re.compile(r"\{tensor:([^{}]*)\}")
QUOTED: Final = re.compile(r'"\{tensor:([^{}"]*)\}"')

_FLOATS: Final = frozenset({"float16", "float32", "float64", "double", "float", "half"})
_SIGNED: Final = frozenset({"int8", "int16", "int32", "int64"})
#: struct codes of the raw (binary) form; float16 is "e".
_STRUCT: Final = {"float16": "e", "half": "e", "float32": "f", "float": "f", "float64": "d",
                  "double": "d", "int8": "b", "int16": "h", "int32": "i", "int64": "q",
                  "uint8": "B", "uint16": "H", "bool": "?"}


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's dtype, shape and whether each request draws it again."""

    dtype: str
    shape: tuple[int, ...]
    random: bool = False

    @property
    def count(self) -> int:
        total = 1
        for dim in self.shape:
            total *= dim
        return total


def parse_tensor(text: str, *, binary: bool = False) -> TensorSpec:
    """``DTYPE:SHAPE`` (``[:random]`` unless ``binary``); ValueError saying what is wrong."""
    parts = text.split(":")
    usage = "DTYPE:SHAPE" if binary else "DTYPE:SHAPE or DTYPE:SHAPE:random"
    if len(parts) not in ((2,) if binary else (2, 3)) or (len(parts) == 3
                                                          and parts[2] != "random"):
        raise ValueError(f"{text!r}: {usage}, DTYPE one of {', '.join(DTYPES)}")
    dtype = parts[0].lower()
    if dtype not in DTYPES:
        raise ValueError(f"{text!r}: DTYPE is one of {', '.join(DTYPES)}")
    shape = tensor_shape(parts[1])
    if shape is None:
        raise ValueError(f"{text!r}: SHAPE is dimensions above 0 joined by x, e.g. 1x224x224x3")
    spec = TensorSpec(dtype, shape, len(parts) == 3)
    if binary and spec.count * DTYPES[dtype] > MAX_BLOB:
        raise ValueError(f"{text!r}: larger than {MAX_BLOB} bytes")
    if not binary and spec.count > MAX_JSON_VALUES:
        raise ValueError(f"{text!r}: more than {MAX_JSON_VALUES} values")
    return spec


def check_placeholders(text: str, *, in_json: bool) -> None:
    """ValueError for a ``{tensor:...}`` in ``text`` that cannot be used; in a JSON body's
    serialised text, one that is not a whole string value (``"{tensor:...}"``)."""
    found = PLACEHOLDER.findall(text)
    for argument in found:
        parse_tensor(argument)
    if not in_json or not found:
        return
    if len(QUOTED.findall(text)) != len(found):
        raise ValueError("in a JSON body, a {tensor:...} is a whole string value, e.g. "
                         '"data": "{tensor:float32:30}"')
    try:
        json.loads(QUOTED.sub("[0]", text))
    except ValueError:
        raise ValueError("in a JSON body, a {tensor:...} is a value, not a key") from None


def _value_maker(dtype: str, random: Callable[[], float]) -> Callable[[], bytes]:
    if dtype in _FLOATS:
        return lambda: b"%.6f" % random()
    if dtype == "bool":
        return lambda: b"true" if random() < 0.5 else b"false"
    low = -128 if dtype in _SIGNED else 0
    return lambda: b"%d" % (low + int(random() * 256))


def _nest(values: Sequence[bytes], shape: tuple[int, ...]) -> bytes:
    """``values`` (flat, row-major) as a JSON array of ``shape``."""
    rows: list[bytes] = list(values)
    for dim in reversed(shape):
        rows = [b"[" + b",".join(rows[start:start + dim]) + b"]"
                for start in range(0, len(rows), dim)]
    return rows[0]


def json_tensor(spec: TensorSpec, random: Random) -> bytes | Callable[[], bytes]:
    """The placeholder's text: bytes when drawn once, else a function picking one of a pool
    of tensors drawn now (:data:`POOL_TENSORS` at most, :data:`POOL_BYTES` in all): a request
    then costs one random draw, not one per value (30 features: 1.7 µs, against 17 µs drawn
    anew each time)."""
    value = _value_maker(spec.dtype, random.random)
    count, shape = spec.count, spec.shape

    def draw() -> bytes:
        return _nest([value() for _ in range(count)], shape)

    if not spec.random:
        return draw()
    first = draw()
    pool = [first] + [draw() for _ in range(min(POOL_TENSORS, POOL_BYTES // len(first)) - 1)]
    size, pick = len(pool), random.random
    return lambda: pool[int(pick() * size)]


POOL_TENSORS: Final = 1024
POOL_BYTES: Final = 16 * 1024 * 1024


def binary_tensor(spec: TensorSpec, random: Random) -> bytes:
    """The tensor's raw little-endian bytes, values as :func:`json_tensor` draws them."""
    code = _STRUCT[spec.dtype]
    draw = random.random
    if spec.dtype in _FLOATS:
        values: list[float | int | bool] = [draw() for _ in range(spec.count)]
    elif spec.dtype == "bool":
        values = [draw() < 0.5 for _ in range(spec.count)]
    else:
        low = -128 if spec.dtype in _SIGNED else 0
        values = [low + int(draw() * 256) for _ in range(spec.count)]
    return struct.pack(f"<{spec.count}{code}", *values)
