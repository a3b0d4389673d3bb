"""Writes of the registry: runtimes added, replaced and removed (``manage.py runtime``, tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import ProtectedError

from platform_core.registry.models import Runtime


class RuntimeInUse(Exception):
    """A runtime that plugins still name cannot be removed."""


@transaction.atomic
def runtime_add(
    *,
    name: str,
    command: Sequence[str],
    workdir: str = "{root}",
    env: Mapping[str, str] | None = None,
    image: str = "",
    container_command: Sequence[str] = (),
    limit_address_space: bool = True,
    description: str = "",
    replace: bool = False,
) -> tuple[Runtime, bool]:
    """Register runtime ``name`` (or replace its recipe when ``replace``); (runtime, created).

    Raises ``ValidationError`` naming each problem (unknown placeholder, no {socket}, bad name,
    already registered without ``replace``).
    """
    existing = Runtime.objects.select_for_update().filter(name=name).first()
    if existing is not None and not replace:
        raise ValidationError(f"runtime {name!r} already exists (pass --replace to change its recipe)")
    runtime = existing or Runtime(name=name)
    runtime.command = list(command)
    runtime.workdir = workdir
    runtime.env = dict(env or {})
    runtime.image = image
    runtime.container_command = list(container_command)
    runtime.limit_address_space = limit_address_space
    runtime.description = description or runtime.description
    if existing is None:  # a replaced runtime keeps its zygote options (Python's)
        runtime.zygote_command, runtime.zygote_args = [], []
    runtime.full_clean()
    runtime.save()
    return runtime, existing is None


@transaction.atomic
def runtime_remove(*, name: str) -> None:
    """Remove runtime ``name``; ``Runtime.DoesNotExist``, or ``RuntimeInUse`` while plugins name it."""
    runtime = Runtime.objects.get(name=name)
    try:
        runtime.delete()
    except ProtectedError:
        plugins = ", ".join(runtime.plugins.order_by("name").values_list("name", flat=True))
        raise RuntimeInUse(f"runtime {name!r} is used by plugin(s) {plugins}: remove them or move them first") from None
