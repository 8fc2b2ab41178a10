"""HTTP request templates: what the http driver sends, compiled once and rendered per request.
Pure (no I/O).

A template is a method, a path, headers and an optional body (text, JSON or binary). Two
placeholders may appear in the path, a header value or a text/JSON body:

* ``{seq}``: this load process's request counter (starts at the process's index and steps by
  the number of processes, so it is unique on a client host);
* ``{rand_int}``: a uniform random integer in ``0 .. keyspace-1``.

A text or JSON body may also hold ``{tensor:DTYPE:SHAPE}`` (``[:random]``), a JSON array of
that shape (:mod:`agent.drivers.http_tensors`). Any other brace is literal (a JSON body is full
of them). A binary body has no placeholders; a ``tensor`` body is a tensor's raw bytes and a
``file`` body a file's bytes, read once on the client host. A template whose pieces are all
fixed is rendered once, at compile time: sending it costs nothing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from random import Random
from typing import Any, Final

from agent.drivers.http_tensors import (
    PLACEHOLDER,
    QUOTED,
    TensorSpec,
    binary_tensor,
    check_placeholders,
    json_tensor,
    parse_tensor,
)

SEQ: Final = "{seq}"
RAND_INT: Final = "{rand_int}"
PLACEHOLDERS: Final = (SEQ, RAND_INT)

#: A compiled piece: literal bytes, the index of a placeholder in :data:`PLACEHOLDERS`, or a
#: function giving a ``:random`` tensor for each request.
Piece = bytes | int | Callable[[], bytes]


@dataclass(frozen=True)
class Body:
    """A request body: ``text`` (placeholders expanded), ``json`` (serialised once, then
    expanded like text), ``binary`` (sent as given), ``tensor`` (a :class:`TensorSpec`'s raw
    bytes, drawn once) or ``file`` (the bytes of the file at this path)."""

    kind: str  # "text", "json", "binary", "tensor" or "file"
    value: Any

    def text(self) -> str:
        """A text or JSON body's text, before expansion."""
        if self.kind == "text":
            return str(self.value)
        return json.dumps(self.value, separators=(",", ":"))

    def pieces(self, random: Random, read_file: Callable[[str], bytes] | None) -> list[Piece]:
        if self.kind == "binary":
            return [bytes(self.value)]
        if self.kind == "tensor":
            return [binary_tensor(self.value, random)]
        if self.kind == "file":
            if read_file is None:
                raise ValueError(f"body file {self.value}: no way to read files given")
            return [read_file(self.value)]
        pattern = PLACEHOLDER if self.kind == "text" else QUOTED
        text = self.text()
        pieces: list[Piece] = []
        position = 0
        for match in pattern.finditer(text):
            pieces += split_placeholders(text[position:match.start()])
            pieces.append(json_tensor(parse_tensor(match.group(1)), random))
            position = match.end()
        return pieces + split_placeholders(text[position:])

    @property
    def content_type(self) -> str:
        return {"text": "text/plain; charset=utf-8",
                "json": "application/json"}.get(self.kind, "application/octet-stream")


@dataclass(frozen=True)
class RequestTemplate:
    """One kind of request; ``name`` labels its histogram."""

    name: str
    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Body | None = None
    weight: int = 1
    expect_status: int | None = None  # None: any 2xx
    json_path: str | None = None  # a path the JSON response must hold, e.g. "outputs.0.data"


def split_placeholders(text: str) -> list[Piece]:
    """``text`` as UTF-8 literals and placeholder indices, in order."""
    pieces: list[Piece] = []
    rest = text
    while rest:
        found = [(rest.find(token), index) for index, token in enumerate(PLACEHOLDERS)]
        hits = [(position, index) for position, index in found if position >= 0]
        if not hits:
            pieces.append(rest.encode())
            break
        position, index = min(hits)
        if position:
            pieces.append(rest[:position].encode())
        pieces.append(index)
        rest = rest[position + len(PLACEHOLDERS[index]):]
    return pieces


def _merge(pieces: Sequence[Piece]) -> list[Piece]:
    """Adjacent literals joined."""
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] = merged[-1] + piece
        elif piece != b"":
            merged.append(piece)
    return merged


def _render(pieces: Sequence[Piece], values: Sequence[bytes]) -> bytes:
    return b"".join(piece if isinstance(piece, bytes)
                    else values[piece] if isinstance(piece, int) else piece()
                    for piece in pieces)


@dataclass(frozen=True)
class CompiledRequest:
    """A template ready to send: :meth:`render` gives the request's bytes."""

    name: str
    head: tuple[Piece, ...]  # request line and headers, without Content-Length and the end
    body: tuple[Piece, ...]
    static: bytes | None  # the whole request when nothing in it varies
    has_body: bool

    def render(self, seq: int, rand_int: int) -> bytes:
        """The request's bytes with ``{seq}`` and ``{rand_int}`` replaced."""
        if self.static is not None:
            return self.static
        values = (str(seq).encode(), str(rand_int).encode())
        body = _render(self.body, values)
        head = _render(self.head, values)
        if self.has_body:
            head += b"Content-Length: %d\r\n" % len(body)
        return head + b"\r\n" + body


def compile_request(template: RequestTemplate, host: str,
                    common_headers: Mapping[str, str], base_path: str = "", *,
                    random: Random | None = None,
                    read_file: Callable[[str], bytes] | None = None) -> CompiledRequest:
    """The template as pieces, for a server known as ``host`` (the ``Host`` header);
    ``common_headers`` (the server's) come first, the template's override them by name;
    ``base_path`` is prefixed to the template's path. ``random`` draws the body's tensors
    (default: a generator seeded 0); ``read_file`` reads a ``file`` body's bytes (the caller's
    I/O: this module does none)."""
    headers = {"Host": host}
    if template.body is not None:
        headers["Content-Type"] = template.body.content_type
    for name, value in [*common_headers.items(), *template.headers.items()]:
        for existing in [key for key in headers if key.lower() == name.lower()]:
            del headers[existing]
        headers[name] = value
    path = base_path.rstrip("/") + template.path
    head: list[Piece] = [f"{template.method} ".encode(), *split_placeholders(path),
                         b" HTTP/1.1\r\n"]
    for name, value in headers.items():
        head += [f"{name}: ".encode(), *split_placeholders(value), b"\r\n"]
    draw = random if random is not None else Random(0)  # noqa: S311 (a load, not a secret)
    body = template.body.pieces(draw, read_file) if template.body is not None else []
    head_pieces, body_pieces = _merge(head), _merge(body)
    static = None
    if all(isinstance(piece, bytes) for piece in (*head_pieces, *body_pieces)):
        literal_body = b"".join(piece for piece in body_pieces if isinstance(piece, bytes))
        literal_head = b"".join(piece for piece in head_pieces if isinstance(piece, bytes))
        if template.body is not None:
            literal_head += b"Content-Length: %d\r\n" % len(literal_body)
        static = literal_head + b"\r\n" + literal_body
    return CompiledRequest(template.name, tuple(head_pieces), tuple(body_pieces), static,
                           template.body is not None)


def body_from_json(data: Mapping[str, Any]) -> Body:
    """A body from its spec form: exactly one of ``{"text": s}``, ``{"json": v}``,
    ``{"base64": s}``, ``{"tensor": "DTYPE:SHAPE"}``, ``{"file": PATH}``; ValueError
    otherwise (its ``{tensor:...}`` placeholders checked too)."""
    if len(data) != 1:
        raise ValueError(f"must have exactly one of {', '.join(BODY_KINDS)}, got {sorted(data)}")
    (kind, value), = data.items()
    body: Body | None = None
    if kind == "json":
        body = Body("json", value)
    elif kind not in BODY_KINDS or not isinstance(value, str):
        raise ValueError(f"{kind} must be one of {', '.join(BODY_KINDS)} (a string but for "
                         "json)")
    elif kind == "text":
        body = Body("text", value)
    elif kind == "base64":
        return Body("binary", base64.b64decode(value, validate=True))
    elif kind == "tensor":
        spec: TensorSpec = parse_tensor(value, binary=True)
        return Body("tensor", spec)
    elif not value:
        raise ValueError("file must be a path")
    else:
        return Body("file", value)
    check_placeholders(body.text(), in_json=body.kind == "json")
    return body


BODY_KINDS: Final = ("text", "json", "base64", "tensor", "file")
"""The forms a body is given in (``body_from_json``)."""


def picker(weights: Sequence[int], random: Callable[[], float]) -> Callable[[], int]:
    """A function choosing a template's index with probability ``weight / sum(weights)``."""
    if len(weights) == 1:
        return lambda: 0
    total = sum(weights)
    table = [index for index, weight in enumerate(weights) for _ in range(weight)]
    if len(table) == total <= 4096:
        size = len(table)
        return lambda: table[int(random() * size)]
    bounds = []
    running = 0
    for weight in weights:
        running += weight
        bounds.append(running / total)

    def pick() -> int:
        draw = random()
        for index, bound in enumerate(bounds):
            if draw < bound:
                return index
        return len(bounds) - 1

    return pick
