from django.core.management.base import BaseCommand

from platform_core.registry.builtin import builtin_plugins_load
from platform_core.registry.models import PluginSpec


class Command(BaseCommand):
    help = "Load the built-in plugins into the registry (missing ones only, unless --reset)."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="overwrite admin edits of built-in plugins")

    def handle(self, *args, reset: bool = False, **options):
        created, updated = builtin_plugins_load(PluginSpec, reset=reset)
        self.stdout.write(
            f"registry: {created} plugin(s) created, {updated} reset, {PluginSpec.objects.count()} in all"
        )
