"""Reading HTTP/1.1 responses off a connection: an ``httptools`` (llhttp) parser per
connection, and the checks a response must pass. No I/O.

httptools was chosen over h11 by measurement (bench/bench_http_parser.py: about 1.2 million
small responses/s against about 8 000 on this project's machine): the parser must cost far
less than the server's answer. Content-Length and chunked bodies, several responses in one
read and a response split over reads are the parser's business.
"""

from __future__ import annotations

import json
from typing import Any, Final

import httptools

#: Error kinds of responses (the transport's, ``connection`` and ``timeout``, are the loop's).
ERROR_4XX: Final = "http_4xx"
ERROR_5XX: Final = "http_5xx"
ERROR_STATUS: Final = "http_status"  # another status than the one expected (1xx/3xx...)
ERROR_CHECK: Final = "check"  # the JSON path the template asks for is not in the body
ERROR_PROTOCOL: Final = "protocol"  # not HTTP/1.1 the parser can read


class ParseError(Exception):
    """The bytes are not an HTTP response."""


class ResponseReader:
    """Complete responses of one connection, in order: ``(status, body or None, keep_alive)``.
    Bodies are kept only when ``keep_bodies`` (a template checks JSON)."""

    __slots__ = ("_body", "_parser", "done", "keep_bodies")

    def __init__(self, keep_bodies: bool = False) -> None:
        self.keep_bodies = keep_bodies
        self.done: list[tuple[int, bytes | None, bool]] = []
        self._body: list[bytes] = []
        self._parser = httptools.HttpResponseParser(self)

    def feed(self, data: bytes | memoryview) -> None:
        """Parse ``data``; the responses it completed are appended to :attr:`done`."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise ParseError(str(exc) or type(exc).__name__) from None

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if self.keep_bodies:
            self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        body = None
        if self.keep_bodies:
            body = b"".join(self._body)
            self._body.clear()
        self.done.append((parser.get_status_code(), body, parser.should_keep_alive()))


def status_error(status: int, expected: int | None) -> str | None:
    """The error kind of a response's status, None when it is the one wanted (``expected``,
    or any 2xx when None)."""
    if expected is None:
        if 200 <= status < 300:
            return None
    elif status == expected:
        return None
    if 400 <= status < 500:
        return ERROR_4XX
    if 500 <= status < 600:
        return ERROR_5XX
    return ERROR_STATUS


def has_json_path(body: bytes | None, path: str) -> bool:
    """Whether ``body`` is JSON holding ``path`` (keys and list indices separated by dots,
    e.g. ``outputs.0.data``; an empty path: any JSON)."""
    if body is None:
        return False
    try:
        node: Any = json.loads(body)
    except ValueError:
        return False
    for step in path.split(".") if path else ():
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            return False
    return True
