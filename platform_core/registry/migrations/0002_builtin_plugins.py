"""Load the built-in plugins (the seed's calculators and demos) into the registry."""

from django.db import migrations


def load(apps, schema_editor):
    from platform_core.registry.builtin import builtin_plugins_load

    builtin_plugins_load(apps.get_model("registry", "PluginSpec"))


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_initial")]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
