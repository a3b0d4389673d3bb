"""Reads of the plugin registry."""

from __future__ import annotations

import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q

from platform_core.db import reconnecting
from platform_core.registry.models import PluginSpec

# Registry lookups are on every request's path, so they are cached per process. An edit in
# this process (admin, loadplugins) clears the cache at once (signals in apps.py); other
# processes see it within REGISTRY_CACHE_TTL_S.
_cache: dict[str, tuple[float, PluginSpec | None]] = {}


def registry_cache_clear() -> None:
    _cache.clear()


@reconnecting  # runs on the invocation edge's sync thread (platform_core/db.py)
def _enabled_plugin(name: str) -> PluginSpec | None:
    # With its runtime: allocation sends the runtime's recipe, and the gateway is async (no lazy loads).
    return PluginSpec.objects.select_related("runtime").filter(Q(name=name) | Q(operation=name), enabled=True).first()


async def plugin_get(*, name: str) -> PluginSpec | None:
    """The enabled plugin called ``name`` (primitive name or operation alias), or None."""
    now = time.monotonic()
    hit = _cache.get(name)
    if hit is not None and hit[0] > now:
        return hit[1]
    plugin = await sync_to_async(_enabled_plugin)(name)
    if len(_cache) > 1000:  # unknown names must not grow it without bound
        _cache.clear()
    _cache[name] = (now + settings.PLATFORM_REGISTRY_CACHE_TTL_S, plugin)
    return plugin


def plugin_by_name(*, name: str) -> PluginSpec | None:
    """The plugin called ``name``, enabled or not (the catalogue shows both), or None."""
    return PluginSpec.objects.select_related("runtime").filter(name=name).first()


def registry_ping() -> None:
    """One query to the registry's database; raises the database's error when it does not answer."""
    PluginSpec.objects.exists()


def plugins_list(*, include_disabled: bool = False) -> list[PluginSpec]:
    query = PluginSpec.objects.select_related("runtime")
    if not include_disabled:
        query = query.filter(enabled=True)
    return list(query)
