from pathlib import Path

from django.core.management.base import BaseCommand

from platform_core.tenancy.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant (created if missing). The key is printed once; only its hash is kept."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--name", required=True, help="what will use the key")
        parser.add_argument("--staff", action="store_true", help="the key sees every tenant's invocations")
        parser.add_argument("--output", type=Path, help="write the key to this file (mode 0600) instead of stdout")

    def handle(self, *args, tenant: str, name: str, staff: bool, output: Path | None, **options):
        _, key = api_key_create(tenant_slug=tenant, name=name, is_staff=staff)
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.touch(mode=0o600)
            output.write_text(key + "\n")
            self.stderr.write(f"API key for tenant {tenant} written to {output}")
        else:
            self.stdout.write(key)
