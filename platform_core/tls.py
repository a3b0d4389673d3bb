"""Mutual TLS between gateways and supervisors: the supervisor API and the PPP relay.

Both sides hold a certificate and key signed by one CA and check the other's against that CA:
a supervisor answers only callers with a client certificate of the CA
(``require_client_auth=True``), and a gateway talks only to supervisors whose certificate the CA
signed for the name it dials (or ``SUPERVISOR_TLS_SERVER_NAME``, for supervisors found by
address, e.g. Kubernetes pods that share one certificate).

Settings (PEM text, or the ``_FILE`` variant naming a PEM file, as every secret):
``SUPERVISOR_TLS_CERT``, ``SUPERVISOR_TLS_KEY``, ``SUPERVISOR_TLS_CA``; all three or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from django.core.exceptions import ImproperlyConfigured

from platform_core.env import env_str

_VARIABLES = ("SUPERVISOR_TLS_CERT", "SUPERVISOR_TLS_KEY", "SUPERVISOR_TLS_CA")


@dataclass(frozen=True)
class TlsMaterial:
    cert: bytes
    key: bytes
    ca: bytes
    # Name the supervisors' certificates are checked against instead of the dialled host.
    server_name: str = ""

    def __repr__(self) -> str:  # never print a private key (settings pages, tracebacks)
        return f"TlsMaterial(server_name={self.server_name!r})"


def _pem(name: str, text: str) -> bytes:
    if "-----BEGIN " not in text:
        raise ImproperlyConfigured(
            f"{name} is not PEM text (set {name}_FILE to a file's path, or {name} to the PEM itself)"
        )
    return text.strip().encode() + b"\n"


def tls_from_env() -> TlsMaterial | None:
    """The TLS material of this process, or None when none is configured."""
    values = {name: env_str(name, "") for name in _VARIABLES}
    given = [name for name, value in values.items() if value]
    if not given:
        return None
    if missing := [name for name in _VARIABLES if name not in given]:
        raise ImproperlyConfigured(
            f"mutual TLS needs {', '.join(_VARIABLES)} (or their _FILE variants) together; missing {', '.join(missing)}"
        )
    cert, key, ca = (_pem(name, values[name]) for name in _VARIABLES)
    return TlsMaterial(cert, key, ca, server_name=env_str("SUPERVISOR_TLS_SERVER_NAME", ""))


def server_credentials(tls: TlsMaterial) -> grpc.ServerCredentials:
    """A supervisor's: its certificate, and a client certificate of the CA required of every caller."""
    return grpc.ssl_server_credentials([(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True)


def secure_channel(
    address: str, tls: TlsMaterial, *, options: list[tuple[str, Any]], **kwargs: Any
) -> grpc.aio.Channel:
    """A gateway's channel to a supervisor, presenting the gateway's certificate."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
    )
    if tls.server_name:
        options = [*options, ("grpc.ssl_target_name_override", tls.server_name)]
    return grpc.aio.secure_channel(address, credentials, options=options, **kwargs)


def supervisor_channel(address: str, *, options: list[tuple[str, Any]], **kwargs: Any) -> grpc.aio.Channel:
    """A channel to a supervisor as the settings say: mutual TLS when configured, else plain."""
    from django.conf import settings

    if (tls := settings.PLATFORM_SUPERVISOR_TLS) is not None:
        return secure_channel(address, tls, options=options, **kwargs)
    return grpc.aio.insecure_channel(address, options=options, **kwargs)
