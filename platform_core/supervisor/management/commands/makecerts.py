"""``manage.py makecerts --out var/tls --name sup-a.example --name 10.0.0.5``: development mTLS files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from platform_core.certs import LOOPBACK_NAMES, write_dev_certs


class Command(BaseCommand):
    help = "Make a development CA and certificates for gateways and supervisors (mutual TLS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", default="var/tls", help="directory for the PEM files (default: var/tls)")
        parser.add_argument(
            "--name",
            action="append",
            default=[],
            help=f"a DNS name or IP address the gateways dial a supervisor by (repeatable; {', '.join(LOOPBACK_NAMES)} "
            "are always included)",
        )
        parser.add_argument("--gateway-name", default="gateway", help="name in the gateways' client certificate")

    def handle(self, *args: Any, out: str, name: list[str], gateway_name: str, **options: Any) -> None:
        directory = Path(out)
        for path in write_dev_certs(directory, supervisor_names=name, gateway_name=gateway_name):
            self.stdout.write(f"wrote {path}")
        for role, stem in (("Supervisors", "supervisor"), ("Gateways", "gateway")):
            files = f"SUPERVISOR_TLS_CERT_FILE={directory}/{stem}.crt SUPERVISOR_TLS_KEY_FILE={directory}/{stem}.key"
            self.stdout.write(f"{role}: {files} SUPERVISOR_TLS_CA_FILE={directory}/ca.crt")
        self.stdout.write("Keep ca.key offline: it signs every certificate the platform trusts.")
