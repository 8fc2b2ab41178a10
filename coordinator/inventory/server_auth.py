"""The target server's AUTH password, from wherever the inventory says it is.

A server's password may be written in the inventory (``password``), or kept out of it: in a
file (``password_file``, e.g. one of mode 0600 beside the SSH keys) or in an environment
variable (``password_env``). Only coord reads it, once, before any host is touched; from here
it travels in the load spec to the client agents over the RPyC link and on to their load
processes over a socket pair: never through a shell, a command line, a log or results.json.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from coordinator.core.errors import UsageError
from coordinator.inventory.loader import read_regular_file
from coordinator.inventory.schema import Inventory, Server
from coordinator.run.loadspec import target_of

MAX_PASSWORD_FILE_BYTES = 64 * 1024
"""A password file is one line; anything longer is not one (and ``/dev/zero`` never ends)."""


class PasswordUnavailable(UsageError):
    """The password file or variable an inventory names cannot be read (exit 2)."""


def target_password(
    inventory: Inventory, environ: Mapping[str, str] | None = None
) -> str | None:
    """The password of the run's target server (None: the server asks for none)."""
    server = target_of(inventory)
    return server_password(server, inventory.servers.index(server), environ)


def server_password(
    server: Server, index: int, environ: Mapping[str, str] | None = None
) -> str | None:
    """``servers[index]``'s password: written, read from its file, or from its variable.

    Errors are one line naming the field and the server; they never quote the secret.
    """
    if server.password_file is not None:
        field = f"servers[{index}].password_file"
        path = Path(server.password_file).expanduser()
        try:
            raw = read_regular_file(path, MAX_PASSWORD_FILE_BYTES)
            text = raw.decode("utf-8")
        except OSError as exc:
            raise PasswordUnavailable(
                f"{field}: cannot read the password of server {server.name!r} from {path}: "
                f"{exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise PasswordUnavailable(
                f"{field}: the password file {path} of server {server.name!r} is not UTF-8 text"
            ) from None
        if len(raw) > MAX_PASSWORD_FILE_BYTES:
            raise PasswordUnavailable(
                f"{field}: the password file {path} of server {server.name!r} is over "
                f"{MAX_PASSWORD_FILE_BYTES} bytes; it holds one line"
            )
        return _non_empty(_without_line_end(text), field, server, f"the file {path}")
    if server.password_env is not None:
        field = f"servers[{index}].password_env"
        value = (os.environ if environ is None else environ).get(server.password_env)
        if value is None:
            raise PasswordUnavailable(
                f"{field}: the environment variable {server.password_env} holding the "
                f"password of server {server.name!r} is not set"
            )
        return _non_empty(value, field, server, f"the environment variable {server.password_env}")
    return server.password


def _without_line_end(text: str) -> str:
    """The file's text without the one line ending editors and ``echo`` add."""
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            return text[: -len(ending)]
    return text


def _non_empty(value: str, field: str, server: Server, where: str) -> str:
    if not value:
        raise PasswordUnavailable(
            f"{field}: {where} holding the password of server {server.name!r} is empty"
        )
    if "\n" in value or "\r" in value:
        raise PasswordUnavailable(
            f"{field}: {where} holding the password of server {server.name!r} has more than "
            "one line"
        )
    return value
