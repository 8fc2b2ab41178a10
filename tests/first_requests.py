"""The instant each connection's first GET or SET left this network namespace, as the kernel
saw it: an independent witness of a load's start, for tests/integration/test_start_skew.py.

Run inside a lab client's namespace (``ip netns exec NS python -m tests.first_requests
--port 6379 --connections 2 --seconds 60``). An ``AF_PACKET`` socket sees every frame the
namespace sends; the kernel stamps each one (``SO_TIMESTAMPNS``, ``CLOCK_REALTIME``) as it is
handed to the device, inside the ``send`` call that sent it. Prints ``ready`` once listening,
then, when every connection has sent a request (or at the deadline), one JSON object:
``{"SOURCE_PORT": NS, ...}``. Linux only, root only.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35  # also SCM_TIMESTAMPNS
IPPROTO_TCP = 6
#: A RESP GET or SET command, as the load sends them (``*N\r\n$3\r\nGET\r\n...``).
COMMANDS = (b"$3\r\nGET\r\n", b"$3\r\nSET\r\n")


def first_request_port(frame: bytes, port: int) -> int | None:
    """The TCP source port of ``frame`` if it is an IPv4 segment to ``port`` carrying a GET or
    SET; None otherwise."""
    if len(frame) < 14 + 20 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
        return None
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    if ip[9] != IPPROTO_TCP or len(ip) < header + 20:
        return None
    tcp = ip[header:]
    source, destination = struct.unpack_from("!HH", tcp, 0)
    payload = tcp[(tcp[12] >> 4) * 4:]
    if destination != port or not any(command in payload for command in COMMANDS):
        return None
    return int(source)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.settimeout(0.5)
    print("ready", flush=True)
    firsts: dict[int, int] = {}
    deadline = time.monotonic() + args.seconds
    while len(firsts) < args.connections and time.monotonic() < deadline:
        try:
            frame, ancillary, _, address = sock.recvmsg(65536, socket.CMSG_SPACE(16))
        except TimeoutError:
            continue
        if address[2] != PACKET_OUTGOING:
            continue
        source = first_request_port(frame, args.port)
        if source is None or source in firsts:
            continue
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("ll", data[:16])
                firsts[source] = seconds * 1_000_000_000 + nanoseconds
    print(json.dumps({str(port): ns for port, ns in firsts.items()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
