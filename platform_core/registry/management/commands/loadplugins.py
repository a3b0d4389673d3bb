from django.core.management.base import BaseCommand

from platform_core.registry.builtin import builtin_plugins_load, builtin_runtimes_load
from platform_core.registry.models import PluginSpec, Runtime


class Command(BaseCommand):
    help = "Load the built-in runtimes and plugins into the registry (missing ones only, unless --reset)."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="overwrite admin edits of built-in entries")

    def handle(self, *args, reset: bool = False, **options):
        # Runtimes first: a plugin names its runtime.
        runtimes_created, runtimes_updated = builtin_runtimes_load(Runtime, reset=reset)
        created, updated = builtin_plugins_load(PluginSpec, reset=reset)
        self.stdout.write(
            f"registry: {runtimes_created} runtime(s) created, {runtimes_updated} reset, {Runtime.objects.count()} "
            f"in all; {created} plugin(s) created, {updated} reset, {PluginSpec.objects.count()} in all"
        )
