"""A real HTTP/1.1 keep-alive server on loopback for the http driver's tests and benchmark:
the standard library's ThreadingHTTPServer (slow, but a real server speaking real HTTP).

Paths: ``/ok`` a small JSON body (Content-Length), ``/chunked`` the same body chunked,
``/fail`` a 500, ``/missing`` a 404, ``/drop`` closes the connection without answering,
``/bye`` answers with ``Connection: close``. Every request is counted per path before its
answer, so the counts are the server's own log.

Run as a process (the lab tests start it in the lab server's namespace)::

    python -m tests.http_server ADDRESS PORT [--cert FILE --key FILE]

prints ``listening`` once it accepts, serves (HTTPS with ``--cert``) until its stdin closes,
then prints its counts as one JSON line and exits.
"""

from __future__ import annotations

import argparse
import collections
import json
import ssl
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b'{"score": 0.25, "outputs": [{"data": [1, 2]}]}'


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((address, port), Handler)
        self.counts: collections.Counter[str] = collections.Counter()
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body are two writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers (40 ms on Linux) whenever the two do not leave
    # together, which made this server answer about 90 requests/s on 4 connections.
    disable_nagle_algorithm = True
    server: CountingServer

    def log_message(self, format: str, *args: object) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        with self.server.lock:
            self.server.counts[path] += 1
            if body and len(self.server.bodies) < 100:
                self.server.bodies.append(body)
        if path == "/drop":
            self.close_connection = True
            return
        if path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(BODY) // 2
            for chunk in (BODY[:half], BODY[half:], b""):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            return
        status = {"/fail": 500, "/missing": 404}.get(path, 200)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        if path == "/bye":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(BODY)

    do_GET = _answer
    do_POST = _answer


@contextmanager
def http_server() -> Iterator[CountingServer]:
    """A counting server on a free loopback port, served from a thread, shut down after."""
    server = CountingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main(argv: Sequence[str]) -> None:
    """The server as a process: see the module's docstring."""
    parser = argparse.ArgumentParser(prog="tests.http_server")
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args(argv)
    server = CountingServer(args.address, args.port)
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print("listening", flush=True)
    sys.stdin.read()  # until the test closes it
    server.shutdown()
    server.server_close()
    thread.join()
    with server.lock:
        print(json.dumps(dict(server.counts)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
