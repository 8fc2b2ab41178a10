"""The server processes found by their listening port (agent/metrics/server.py): every process
that holds the listening socket, as Gunicorn's master and its workers all do, not one of them.

The parsing is pure (the /proc/net/tcp table, a descriptor's link); the last test shares a
real listening socket between this process and a child, as a pre-fork server does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from agent.metrics.server import holders_of, listening_inodes, listening_pids, socket_inode

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode\n")


def tcp_line(slot: int, port: int, state: str, inode: int, *, v6: bool = False) -> str:
    address = "0" * 32 if v6 else "0100007F"
    return (f"{slot:4d}: {address}:{port:04X} {'0' * len(address)}:0000 {state} "
            f"00000000:00000000 00:00000000 00000000  1000        0 {inode} 1 "
            "0000000000000000 100 0 0 10 0\n")


def test_only_listening_sockets_on_the_wanted_ports() -> None:
    table = HEADER + "".join([
        tcp_line(0, 8000, "0A", 111),   # listening on 8000
        tcp_line(1, 8000, "01", 222),   # an established connection to it
        tcp_line(2, 6379, "0A", 333),   # listening on another port
        tcp_line(3, 8000, "0A", 0),     # a listening socket whose inode is gone
    ])
    assert listening_inodes(table, {8000}) == {111: 8000}
    assert listening_inodes(table, {8000, 6379}) == {111: 8000, 333: 6379}
    assert listening_inodes(table, set()) == {}
    assert listening_inodes(HEADER + tcp_line(0, 8000, "0A", 444, v6=True), {8000}) == {
        444: 8000}


@given(st.lists(st.tuples(st.integers(1, 65535), st.sampled_from(["0A", "01", "06"]),
                          st.integers(1, 2**40)), max_size=20), st.sets(st.integers(1, 65535)))
def test_the_table_parser_agrees_with_its_definition(
        rows: list[tuple[int, str, int]], ports: set[int]) -> None:
    table = HEADER + "".join(tcp_line(i, *row) for i, row in enumerate(rows))
    expected = {inode: port for port, state, inode in rows if state == "0A" and port in ports}
    assert listening_inodes(table, ports) == expected


def test_socket_links_and_their_holders() -> None:
    assert socket_inode("socket:[12345]") == 12345
    assert socket_inode("pipe:[12345]") is None
    assert socket_inode("/dev/null") is None
    links = {10: ["socket:[111]", "/dev/null"], 11: ["socket:[111]"], 12: ["socket:[999]"],
             13: [], 14: ["socket:[999]", "socket:[111]"]}
    assert holders_of(links, {111: 8000}) == {10: (8000,), 11: (8000,), 14: (8000,)}
    assert holders_of(links, {111: 8000, 999: 6379}) == {
        10: (8000,), 11: (8000,), 12: (6379,), 14: (6379, 8000)}
    assert holders_of(links, {}) == {}


def test_two_servers_on_one_host_are_told_apart_by_their_ports() -> None:
    """Two targets on one host (a Redis and a model server): each process with its own port,
    so each server is judged on its own CPU."""
    with socket.socket() as first, socket.socket() as second:
        for listener in (first, second):
            listener.bind(("127.0.0.1", 0))
            listener.listen()
        ports = [first.getsockname()[1], second.getsockname()[1]]
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE, pass_fds=[second.fileno()])
        try:
            assert listening_pids(ports) == {os.getpid(): tuple(sorted(ports)),
                                             child.pid: (ports[1],)}
            assert listening_pids(ports[:1]) == {os.getpid(): (ports[0],)}
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(30)


def test_every_process_sharing_a_listening_socket_is_found() -> None:
    """A pre-fork server (Gunicorn): the master listens, each worker inherits the socket.
    psutil.net_connections names one pid per socket, so only one of them was watched."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE, pass_fds=[listener.fileno()])
    try:
        assert listening_pids([port]) == {os.getpid(): (port,), child.pid: (port,)}
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
        listener.close()
