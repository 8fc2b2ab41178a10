"""The server side of a host: the target server's processes and Redis INFO.

The server's processes are found by their listening port: every process holding the listening
socket's inode (/proc/net/tcp, then each /proc/<pid>/fd, which needs the right to read the
owner's descriptors: root or the same user). An agent that
cannot see the owner (the server runs as another user) asks the server itself: INFO's
``process_id``. INFO is taken over a short blocking connection of its own (AUTH first when the
target has a password), one ``INFO <section>`` per section; a failure is kept as the INFO's
``problem``, never raised.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from agent.drivers.errors import DriverError
from agent.drivers.resp import auth_command, encode_command
from agent.drivers.resp_connection import exchange
from agent.metrics.model import INFO_SECTIONS, RedisInfo, RedisTarget

INFO_TIMEOUT_S: Final = 2.0


LISTEN_STATE: Final = "0A"
"""TCP_LISTEN in the ``st`` column of /proc/net/tcp."""
PROC: Final = Path("/proc")


def listening_inodes(table: str, ports: Iterable[int]) -> dict[int, int]:
    """Inode -> port of the sockets listening on ``ports`` in a /proc/net/tcp or tcp6 table
    (its header line first; 0 is a socket already closed)."""
    wanted = set(ports)
    inodes: dict[int, int] = {}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN_STATE:
            continue
        _, _, hex_port = fields[1].rpartition(":")
        port = int(hex_port, 16)
        if port in wanted and int(fields[9]) != 0:
            inodes[int(fields[9])] = port
    return inodes


def socket_inode(link: str) -> int | None:
    """The inode of a descriptor's link (``socket:[12345]``); None for anything else."""
    if link.startswith("socket:[") and link.endswith("]"):
        return int(link[len("socket:["):-1])
    return None


def holders_of(links: Mapping[int, Iterable[str]],
               inodes: Mapping[int, int]) -> dict[int, tuple[int, ...]]:
    """pid -> the ports (sorted) of the ``inodes`` (inode -> port) it holds, for the pids of
    ``links`` (pid -> its descriptors' links) holding one of them."""
    held: dict[int, tuple[int, ...]] = {}
    for pid, targets in links.items():
        ports = {inodes[inode] for target in targets
                 if (inode := socket_inode(target)) is not None and inode in inodes}
        if ports:
            held[pid] = tuple(sorted(ports))
    return held


def listening_pids(ports: Iterable[int], proc: Path = PROC) -> dict[int, tuple[int, ...]]:
    """pid -> its listening ports, for every process holding a socket listening on TCP
    ``ports``, among those this process may see (reading /proc/<pid>/fd needs root or the
    owner's user).

    Every holder, not one: a pre-fork server (Gunicorn) listens in its master and accepts in
    workers that inherited the socket, and its CPU is all of theirs. (psutil.net_connections
    names one pid per socket.) The ports tell two servers on one host apart, so each is
    judged on its own CPU.
    """
    inodes: dict[int, int] = {}
    for name in ("tcp", "tcp6"):
        try:
            inodes |= listening_inodes((proc / "net" / name).read_text(), ports)
        except OSError:
            continue
    if not inodes:
        return {}
    links: dict[int, list[str]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links[int(entry.name)] = [_readlink(fd) for fd in list((entry / "fd").iterdir())]
        except OSError:  # gone, or another user's
            continue
    return holders_of(links, inodes)


def _readlink(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:  # closed since listed
        return ""


def parse_info(text: str) -> dict[str, dict[str, str]]:
    """INFO's text: ``# Section`` headers, then ``field:value`` lines."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line.startswith("#"):
            current = sections.setdefault(line.lstrip("# ").lower(), {})
        elif ":" in line and current is not None:
            name, _, value = line.partition(":")
            current[name] = value
    return sections


def take_info(
    target: RedisTarget, moment: str, sections: Iterable[str] = INFO_SECTIONS
) -> RedisInfo:
    """Redis INFO now; a failure is the answer's ``problem``."""
    taken_ns = time.time_ns()
    if target.tls:
        return RedisInfo(moment, taken_ns, {}, "INFO over TLS is not supported by the sampler")
    wanted = tuple(sections)
    endpoint = f"{target.address}:{target.port}"
    payload = b"".join(encode_command("INFO", section) for section in wanted)
    auth = auth_command(target.username, target.password)
    try:
        with socket.create_connection((target.address, target.port),
                                      timeout=INFO_TIMEOUT_S) as sock:
            replies = exchange(sock, (auth or b"") + payload,
                               len(wanted) + (auth is not None), endpoint)
    except DriverError as exc:
        return RedisInfo(moment, taken_ns, {}, exc.message)
    except OSError as exc:
        return RedisInfo(moment, taken_ns, {}, f"cannot connect to {endpoint}: {exc}")
    parsed: dict[str, Mapping[str, str]] = {}
    for reply in replies[1:] if auth is not None else replies:
        if not isinstance(reply, bytes):
            return RedisInfo(moment, taken_ns, {}, f"{endpoint} refused INFO: {reply}")
        parsed.update(parse_info(reply.decode("utf-8", "replace")))
    return RedisInfo(moment, taken_ns, parsed)


def info_process_id(info: RedisInfo) -> int | None:
    """The server's pid as INFO states it."""
    value = info.sections.get("server", {}).get("process_id")
    return int(value) if value is not None and value.isdigit() else None
