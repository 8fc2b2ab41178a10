"""The lab's view of the network: namespaces, links, addresses, listening sockets, a Redis ping.

Reads ``/run/netns``, ``/sys/class/net`` and ``/proc``, and asks ``ip -j`` (through
:func:`coordinator.lab.system.run`) what sysfs does not say.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

from coordinator.lab.system import PROC, run

NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")


def ns_id(path: Path) -> tuple[int, int] | None:
    """The identity (device, inode) of the namespace file ``path``; None if it is gone."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def namespaces() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    try:
        return sorted(entry.name for entry in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def namespace_id(name: str) -> tuple[int, int] | None:
    return ns_id(NETNS_DIR / name)


def links() -> list[str]:
    try:
        return sorted(entry.name for entry in SYS_NET.iterdir())
    except FileNotFoundError:
        return []


def link_exists(name: str) -> bool:
    return (SYS_NET / name).exists()


def is_bridge(name: str) -> bool:
    return (SYS_NET / name / "bridge").is_dir()


def link_kind(name: str) -> str | None:
    result = run(["ip", "-j", "-d", "link", "show", "dev", name], check=False)
    if result.returncode != 0:
        return None
    try:
        document: list[dict[str, Any]] = json.loads(result.stdout)
        return str(document[0]["linkinfo"]["info_kind"])
    except (ValueError, LookupError, TypeError):
        return None


def ipv4_addresses() -> list[tuple[str, str]]:
    """Every IPv4 address of the root namespace as ``(interface, "address/prefix")``."""
    document: list[dict[str, Any]] = json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout)
    return [
        (str(link["ifname"]), f"{info['local']}/{info['prefixlen']}")
        for link in document
        for info in link.get("addr_info", [])
        if info.get("family") == "inet"
    ]


def tcp_listening(pid: int, address: str, port: int) -> bool:
    """Whether the network namespace of ``pid`` has a TCP socket listening on address:port."""
    wanted = f"{int.from_bytes(socket.inet_aton(address), sys.byteorder):08X}:{port:04X}"
    try:
        table = (PROC / str(pid) / "net" / "tcp").read_text()
    except OSError:
        return False
    listen = "0A"
    return any(
        fields[1] == wanted and fields[3] == listen
        for fields in (line.split() for line in table.splitlines()[1:])
        if len(fields) > 3
    )


def redis_ping(
    address: str, port: int, *, device: str, password: str | None = None, timeout: float = 1.0
) -> bool:
    """Whether a RESP server answers PING on address:port (after AUTH with ``password``),
    reached through ``device`` only.

    The socket is bound to the lab's bridge, so a probe of a half-built lab can never leave
    the machine by the default route.
    """
    request, expected = _resp_command("PING"), b"+PONG\r\n"
    if password is not None:
        request, expected = _resp_command("AUTH", password) + request, b"+OK\r\n" + expected
    received = b""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
            connection.settimeout(timeout)
            connection.connect((address, port))
            connection.sendall(request)
            while len(received) < len(expected) and expected.startswith(received):
                chunk = connection.recv(64)
                if not chunk:
                    break
                received += chunk
    except OSError:
        return False
    return received == expected


def http_ok(address: str, port: int, path: str, *, device: str, timeout: float = 2.0) -> bool:
    """Whether an HTTP server on address:port answers ``GET path`` with status 200, reached
    through ``device`` only (like :func:`redis_ping`)."""
    request = (f"GET {path} HTTP/1.1\r\nHost: {address}:{port}\r\n"
               "Connection: close\r\n\r\n").encode()
    received = b""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
            connection.settimeout(timeout)
            connection.connect((address, port))
            connection.sendall(request)
            while b"\r\n" not in received:
                chunk = connection.recv(256)
                if not chunk:
                    break
                received += chunk
    except OSError:
        return False
    status_line = received.split(b"\r\n", 1)[0].split()
    return len(status_line) >= 2 and status_line[1] == b"200"


def cluster_ok(
    address: str, port: int, *, device: str, password: str | None = None, timeout: float = 1.0
) -> bool:
    """Whether the cluster node at address:port says ``cluster_state:ok`` (CLUSTER INFO)."""
    request = _resp_command("CLUSTER", "INFO")
    if password is not None:
        request = _resp_command("AUTH", password) + request
    received = b""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
            connection.settimeout(timeout)
            connection.connect((address, port))
            connection.sendall(request)
            while b"cluster_state:" not in received or not received.endswith(b"\r\n\r\n"):
                chunk = connection.recv(4096)
                if not chunk:
                    break
                received += chunk
    except OSError:
        return False
    return b"cluster_state:ok" in received


def _resp_command(*words: str) -> bytes:
    encoded = [word.encode() for word in words]
    return f"*{len(encoded)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded
    )
