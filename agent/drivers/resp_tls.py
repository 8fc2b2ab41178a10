"""TLS for RESP connections: the client context from ``target.tls``, and non-blocking reads and
writes with the plain socket's contract.

``target.tls`` (the inventory's ``servers[].tls``): ``ca_file`` (the CA bundle that verifies the
server; default: the system's), ``cert_file`` and ``key_file`` (a client certificate, for
servers that ask for one: ``tls-auth-clients``), ``server_name`` (the name sent as SNI and
checked against the server's certificate; default: the target's address), ``verify`` (false:
accept any certificate, no name check).

The load loop reads and writes through ``recv_into``/``send`` and treats ``BlockingIOError`` as
"not now". An ``SSLSocket`` raises ``SSLWantReadError``/``SSLWantWriteError`` instead (both
``OSError``, which the loop would take for a broken connection), so a TLS connection reads and
writes through :func:`tls_recv_into` and :func:`tls_send`, which translate. Plain TCP keeps the
socket's own methods: its hot path is unchanged.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final

from agent.drivers.errors import KIND_CONFIG, DriverError

#: The fields ``target.tls`` may hold.
TLS_FIELDS: Final = ("ca_file", "cert_file", "key_file", "server_name", "verify")
#: Room kept in the receive buffer for one more TLS record (16 KiB of plaintext at most).
_RECORD: Final = 16384 + 256
#: Plaintext of a full TLS record.
_FULL_RECORD: Final = 16384


def client_context(tls: Mapping[str, Any]) -> ssl.SSLContext:
    """The client context ``tls`` describes; ``DriverError("config")`` naming the field for
    a file that cannot be read or used."""
    unknown = sorted(set(tls) - set(TLS_FIELDS))
    if unknown:
        raise DriverError(
            KIND_CONFIG, f"spec.target.tls has unknown field(s): {', '.join(unknown)}"
        )
    verify = tls.get("verify", True)
    if type(verify) is not bool:
        raise DriverError(
            KIND_CONFIG, f"spec.target.tls.verify must be true or false, got {verify!r}"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ca_file = tls.get("ca_file")
        try:
            if ca_file:
                context.load_verify_locations(cafile=ca_file)
            else:
                context.load_default_certs()
        except (OSError, ssl.SSLError) as exc:
            raise DriverError(KIND_CONFIG, f"tls.ca_file {ca_file}: {_reason(exc)}") from None
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert_file, key_file = tls.get("cert_file"), tls.get("key_file")
    if key_file and not cert_file:
        raise DriverError(KIND_CONFIG, "tls.key_file needs tls.cert_file")
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise DriverError(
                KIND_CONFIG, f"tls.cert_file {cert_file} / key_file {key_file}: {_reason(exc)}"
            ) from None
    return context


def server_name(tls: Mapping[str, Any], address: str) -> str:
    """The name sent as SNI and verified: ``server_name``, else the target's address (an IP
    address is checked against the certificate's IP entries; no SNI is sent for it)."""
    name = tls.get("server_name")
    return str(name) if name else address


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def describe_tls_error(exc: BaseException) -> str:
    """One line for a failed handshake (``CERTIFICATE_VERIFY_FAILED: ...``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    return _reason(exc)


def tls_recv_into(sock: ssl.SSLSocket) -> Callable[[bytearray], int]:
    """``recv_into`` for a non-blocking TLS socket: ``BlockingIOError`` when no whole record is
    there yet; otherwise what OpenSSL already decrypted too (the poller sees only the kernel's
    buffer, not OpenSSL's), and the next records while they come full."""
    read = sock.recv_into
    pending = sock.pending

    def recv_into(buffer: bytearray) -> int:
        view = memoryview(buffer)
        limit = len(buffer) - _RECORD
        try:
            total = read(view)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None
        size = total
        # Another read only when more is likely there: plaintext left in OpenSSL's buffer, or
        # a full record read (large replies); a read that finds nothing raises, which costs
        # more than the poller's next round for small replies.
        while size and total < limit and (size >= _FULL_RECORD or pending()):
            try:
                size = read(view[total:])
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            total += size
        return total

    return recv_into


def tls_send(sock: ssl.SSLSocket) -> Callable[[bytes], int]:
    """``send`` for a non-blocking TLS socket: ``BlockingIOError`` when OpenSSL must wait.

    OpenSSL then expects the same bytes again: the loop's pending output (``Connection.out``)
    is exactly what it tried, so its retry is."""
    write = sock.send

    def send(data: bytes) -> int:
        try:
            return write(data)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise BlockingIOError from None

    return send


#: What :func:`handshake_step` found: the handshake is done, waits to read or to write, or
#: failed (a refused certificate included).
HANDSHAKE_DONE: Final = "done"
HANDSHAKE_READ: Final = "read"
HANDSHAKE_WRITE: Final = "write"
HANDSHAKE_FAILED: Final = "failed"


def handshake_step(sock: object) -> str:
    """One step of a non-blocking TLS handshake, for an event loop that waits on the socket
    between steps (a reconnection inside the load loop); ``HANDSHAKE_*``."""
    if not isinstance(sock, ssl.SSLSocket):
        return HANDSHAKE_FAILED
    try:
        sock.do_handshake()
    except ssl.SSLWantReadError:
        return HANDSHAKE_READ
    except ssl.SSLWantWriteError:
        return HANDSHAKE_WRITE
    except OSError:  # ssl.SSLError included
        return HANDSHAKE_FAILED
    return HANDSHAKE_DONE
