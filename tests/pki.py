"""Certificates for tests: a private CA and what it signs, written as PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def certificate(subject: str, issuer_key, issuer_name: x509.Name | None, key, *, ca: bool = False,
                san_ip: str | None = None, days: int = 365) -> x509.Certificate:
    """``subject``'s certificate for ``key``, signed by ``issuer_key`` (self-signed when ``issuer_name`` is None)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san_ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pem(path: Path, cert: x509.Certificate | None = None, key=None) -> Path:
    data = b""
    if cert is not None:
        data += cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    path.write_bytes(data)
    return path


def private_ca(directory: Path) -> dict[str, Path]:
    """A private CA and what it signed, as PEM files in ``directory``: ``ca`` (its certificate),
    ``engine`` (a server certificate for 127.0.0.1 followed by its key), ``client`` and
    ``client_key`` (a client certificate for a gateway, and its key, mode 0600)."""
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = certificate("Example Hospital private CA", ca_key, None, ca_key, ca=True)
    server = certificate("engine.example.internal", ca_key, ca.subject, server_key, san_ip="127.0.0.1")
    client = certificate("gateway-a.example.internal", ca_key, ca.subject, client_key)
    files = {"ca": write_pem(directory / "ca.pem", ca), "engine": write_pem(directory / "engine.pem", server, server_key),
             "client": write_pem(directory / "gateway.pem", client),
             "client_key": write_pem(directory / "gateway.key", key=client_key)}
    files["client_key"].chmod(0o600)
    return files
