"""A development CA and certificates for mutual TLS between gateways and supervisors.

``manage.py makecerts`` writes them; tests make their own the same way. Production may use any
CA (its own PKI, cert-manager in Kubernetes): the platform only reads PEM files.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Names every supervisor certificate carries, so that loopback set-ups work out of the box.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class KeyPair:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "plugin platform (development)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_ca(common_name: str = "plugin platform development CA", *, days: int = 3650) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key, cert)


def make_leaf(ca: KeyPair, common_name: str, names: list[str], *, server: bool, days: int = 825) -> KeyPair:
    """A certificate signed by ``ca`` for ``names`` (DNS names or IP addresses): a server's
    (supervisor) or a client's (gateway)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
    return KeyPair(key, builder.sign(ca.key, hashes.SHA256()))


def _write(path: Path, data: bytes, *, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _load_ca(directory: Path) -> KeyPair | None:
    cert, key = directory / "ca.crt", directory / "ca.key"
    if not (cert.exists() and key.exists()):
        return None
    return KeyPair(
        serialization.load_pem_private_key(key.read_bytes(), password=None),  # type: ignore[arg-type]
        x509.load_pem_x509_certificate(cert.read_bytes()),
    )


def write_dev_certs(directory: Path, *, supervisor_names: list[str], gateway_name: str = "gateway") -> list[Path]:
    """``ca.crt``/``ca.key`` (kept if present: new leaves join the same CA), ``supervisor.crt``/
    ``.key`` for ``supervisor_names`` plus loopback, ``gateway.crt``/``.key``; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    ca = _load_ca(directory)
    if ca is None:
        ca = make_ca()
        _write(directory / "ca.key", ca.key_pem(), private=True)
        _write(directory / "ca.crt", ca.cert_pem(), private=False)
        written += [directory / "ca.key", directory / "ca.crt"]
    names = list(dict.fromkeys([*supervisor_names, *LOOPBACK_NAMES]))
    for stem, pair in (
        ("supervisor", make_leaf(ca, names[0], names, server=True)),
        ("gateway", make_leaf(ca, gateway_name, [gateway_name], server=False)),
    ):
        _write(directory / f"{stem}.key", pair.key_pem(), private=True)
        _write(directory / f"{stem}.crt", pair.cert_pem(), private=False)
        written += [directory / f"{stem}.key", directory / f"{stem}.crt"]
    return written
