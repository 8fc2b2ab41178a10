"""The lab's TLS material (``coord lab up --tls``): a throw-away CA, a server certificate for
the server host's address and name, and a client certificate for mutual TLS.

Made with the ``cryptography`` package when it is installed, else with the ``openssl`` command
(the same files either way: PEM, EC P-256 keys, valid one year). Nothing here is a secret worth
keeping: the CA's key is thrown away as soon as the certificates are signed, so nothing else
can ever be signed by it.
"""

from __future__ import annotations

import datetime
import ipaddress
import tempfile
from dataclasses import dataclass
from pathlib import Path

from coordinator.lab import system as sysio

VALID_DAYS = 365


@dataclass(frozen=True)
class LabCertificates:
    """PEM texts: the CA's certificate, the server's and the client's certificate and key."""

    ca_cert: bytes
    server_cert: bytes
    server_key: bytes
    client_cert: bytes
    client_key: bytes


def make_certificates(lab: str, server_address: str, server_name: str) -> LabCertificates:
    """A CA, and server and client certificates signed by it; the server's valid for
    ``server_address`` (IP) and ``server_name`` (DNS, for SNI)."""
    try:
        import cryptography  # noqa: F401, PLC0415 - optional: the openssl command otherwise
    except ImportError:
        return _with_openssl(lab, server_address, server_name)
    return _with_cryptography(lab, server_address, server_name)


def _with_cryptography(lab: str, server_address: str, server_name: str) -> LabCertificates:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(f"coord lab {lab} CA")
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common: str, usage: x509.ObjectIdentifier,
             names: list[x509.GeneralName] | None) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(name(common)).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)

    server_cert, server_key = leaf(
        server_name, ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address(server_address)), x509.DNSName(server_name)],
    )
    client_cert, client_key = leaf(f"coord lab {lab} client", ExtendedKeyUsageOID.CLIENT_AUTH,
                                   None)
    return LabCertificates(ca_cert.public_bytes(serialization.Encoding.PEM), server_cert,
                           server_key, client_cert, client_key)


def _with_openssl(lab: str, server_address: str, server_name: str) -> LabCertificates:
    with tempfile.TemporaryDirectory(prefix="coord-lab-tls-") as scratch:
        work = Path(scratch)

        def path(file: str) -> str:
            return str(work / file)

        days = str(VALID_DAYS)
        sysio.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:P-256", "-nodes", "-keyout", path("ca.key"),
                   "-out", path("ca.crt"), "-days", days, "-subj", f"/CN=coord lab {lab} CA",
                   "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"])
        leaves = (
            ("server", server_name, "serverAuth",
             f"subjectAltName=IP:{server_address},DNS:{server_name}"),
            ("client", f"coord lab {lab} client", "clientAuth", None),
        )
        for leaf, common, usage, alt in leaves:
            sysio.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-nodes", "-keyout", path(f"{leaf}.key"), "-out", path(f"{leaf}.csr"),
                       "-subj", f"/CN={common}"])
            extensions = [f"extendedKeyUsage={usage}", "basicConstraints=critical,CA:FALSE"]
            if alt is not None:
                extensions.append(alt)
            (work / f"{leaf}.ext").write_text("\n".join(extensions) + "\n")
            sysio.run(["openssl", "x509", "-req", "-in", path(f"{leaf}.csr"), "-CA",
                       path("ca.crt"), "-CAkey", path("ca.key"), "-CAcreateserial",
                       "-out", path(f"{leaf}.crt"), "-days", days,
                       "-extfile", path(f"{leaf}.ext")])
        return LabCertificates(*(
            (work / file).read_bytes()
            for file in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")
        ))
