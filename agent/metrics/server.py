"""The server side of a host: the target server's processes and Redis INFO.

The server process is found by its listening port (psutil maps the socket's inode to a pid,
which needs the right to read the owner's /proc/<pid>/fd: root or the same user). An agent that
cannot see the owner (the server runs as another user) asks the server itself: INFO's
``process_id``. INFO is taken over a short blocking connection of its own (AUTH first when the
target has a password), one ``INFO <section>`` per section; a failure is kept as the INFO's
``problem``, never raised.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Mapping
from typing import Final

import psutil

from agent.drivers.errors import DriverError
from agent.drivers.resp import auth_command, encode_command
from agent.drivers.resp_connection import exchange
from agent.metrics.model import INFO_SECTIONS, RedisInfo, RedisTarget

INFO_TIMEOUT_S: Final = 2.0


def listening_pids(ports: Iterable[int]) -> set[int]:
    """Pids of the processes listening on TCP ``ports`` that this process may see."""
    wanted = set(ports)
    if not wanted:
        return set()
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return set()
    return {
        connection.pid
        for connection in connections
        if connection.status == psutil.CONN_LISTEN
        and connection.laddr
        and connection.laddr.port in wanted
        and connection.pid is not None
    }


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
