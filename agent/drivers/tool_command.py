"""What the external tools' command lines share (redis-benchmark, memtier_benchmark): the TLS
options, and a command line fit for a log. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["redacted", "tls_options"]

#: The target's TLS settings and the option both tools take for each.
_TLS_FILES = (("ca_file", "--cacert"), ("cert_file", "--cert"), ("key_file", "--key"),
              ("server_name", "--sni"))


def tls_options(tls: Mapping[str, Any] | None, *, skip_verify: str) -> list[str]:
    """The tool's TLS options for the target's ``tls`` (None: plain TCP); ``skip_verify`` is
    the tool's own flag for ``verify: false`` (they differ)."""
    if tls is None:
        return []
    argv = ["--tls"]
    for key, option in _TLS_FILES:
        if tls.get(key):
            argv += [option, str(tls[key])]
    if tls.get("verify") is False:
        argv.append(skip_verify)
    return argv


def redacted(argv: Sequence[str]) -> list[str]:
    """``argv`` fit for a log: the credentials after ``-a`` replaced."""
    shown = list(argv)
    for index, word in enumerate(shown[:-1]):
        if word == "-a":
            shown[index + 1] = "***"
    return shown
