"""HTTP/1.1 response parsing cost, httptools (llhttp) against h11: what chose the http
driver's parser (agent/drivers/http_response.py). Parses the same small keep-alive response
``--responses`` times with each, one response per feed (as the driver's reads bring them).

    .venv/bin/python bench/bench_http_parser.py [--responses 200000]

Needs h11 installed besides httptools (pip install h11); no lab, no root.
"""

from __future__ import annotations

import argparse
import time

import h11
import httptools

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n"
            b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\nServer: x\r\n\r\n"
            b'{"score": 0.12345, "ok": 1}')


class Count:
    def __init__(self) -> None:
        self.done = 0

    def on_message_complete(self) -> None:
        self.done += 1


def httptools_rate(count: int) -> float:
    sink = Count()
    parser = httptools.HttpResponseParser(sink)
    started = time.perf_counter()
    for _ in range(count):
        parser.feed_data(RESPONSE)
    assert sink.done == count
    return count / (time.perf_counter() - started)


def h11_rate(count: int) -> float:
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target="/", headers=[("Host", "x")])
    started = time.perf_counter()
    for _ in range(count):
        connection.send(request)
        connection.send(h11.EndOfMessage())
        connection.receive_data(RESPONSE)
        while type(event := connection.next_event()) is not h11.EndOfMessage:
            assert event is not h11.NEED_DATA
        connection.start_next_cycle()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=200_000)
    count = parser.parse_args().responses
    print(f"httptools {httptools_rate(count):>12,.0f} responses/s")
    print(f"h11       {h11_rate(count // 10):>12,.0f} responses/s (request and response cycle)")


if __name__ == "__main__":
    main()
