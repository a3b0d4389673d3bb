"""Reads of the plugin registry."""

from __future__ import annotations

from django.db.models import Q

from platform_core.registry.models import PluginSpec


async def plugin_get(*, name: str) -> PluginSpec | None:
    """The enabled plugin called ``name`` (primitive name or operation alias), or None."""
    return await PluginSpec.objects.filter(Q(name=name) | Q(operation=name), enabled=True).afirst()


async def plugin_for_operation(*, operation: str) -> PluginSpec | None:
    """The enabled plugin whose operation alias is ``operation``, or None."""
    return await PluginSpec.objects.filter(operation=operation, enabled=True).afirst()


def plugins_list(*, include_disabled: bool = False) -> list[PluginSpec]:
    query = PluginSpec.objects.all()
    if not include_disabled:
        query = query.filter(enabled=True)
    return list(query)
