"""Host keys: how known_hosts names a host, and the policies for a key it does not hold.

fabric's ``Connection`` accepts any key by default (paramiko ``AutoAddPolicy``, no known_hosts
loaded); coord loads the inventory's known_hosts file and sets the missing-key policy
explicitly: ``strict`` refuses unknown keys, ``accept-new`` appends them to the known_hosts file
(like OpenSSH's ``StrictHostKeyChecking=accept-new``). A changed key is always refused
(paramiko raises ``BadHostKeyException`` before any policy is asked).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

import paramiko


def known_hosts_name(address: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: ``addr`` on port 22, ``[addr]:port`` otherwise."""
    return address if port == 22 else f"[{address}]:{port}"


def describe_key(key: paramiko.PKey) -> str:
    """``ssh-ed25519 SHA256:...``, the form ``ssh-keygen -l`` prints."""
    return f"{key.get_name()} {key.fingerprint}"


class UnknownHostKey(paramiko.SSHException):
    """Raised by the strict policy; carries the key so the message can show its fingerprint."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"unknown host key for {hostname}")
        self.hostname = hostname
        self.key = key


class StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse any host key that known_hosts does not hold."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise UnknownHostKey(hostname, key)


_KNOWN_HOSTS_LOCK = threading.Lock()


class AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Record an unknown host key in known_hosts (appending, never rewriting the file)."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        record_host_key(self.known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)


def missing_key_policy(policy: str, known_hosts: Path) -> paramiko.MissingHostKeyPolicy:
    """The paramiko policy for an inventory's ``host_key_policy`` (anything else is strict)."""
    if policy == "accept-new":
        return AcceptNewPolicy(known_hosts)
    return StrictPolicy()


def record_host_key(known_hosts: Path, hostname: str, key: paramiko.PKey) -> None:
    """Append ``hostname key`` to ``known_hosts`` unless it is there already.

    Safe against other threads and processes doing the same (the file is locked and re-read
    under the lock). If another writer recorded a *different* key for the host in the
    meantime, ``BadHostKeyException`` is raised, as for any changed key.
    """
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _KNOWN_HOSTS_LOCK:
        fd = os.open(known_hosts, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            current = paramiko.HostKeys()
            with contextlib.suppress(OSError):
                current.load(str(known_hosts))
            known = current.lookup(hostname)
            if known is not None and key.get_name() in known:
                if known[key.get_name()] != key:
                    raise paramiko.BadHostKeyException(hostname, key, known[key.get_name()])
                return
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                handle.seek(handle.tell() - 1)
                if handle.read(1) != "\n":
                    handle.write("\n")
            line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
            if line is None:
                raise ValueError(f"cannot write a known_hosts line for {hostname}")
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
