"""Typed readers for settings from environment variables; bad values fail loudly."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str) -> str:
    """``$NAME``, or ``$NAME_FILE``'s content (for secrets), or ``default``."""
    if (path := os.environ.get(f"{name}_FILE")) is not None:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from exc
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false)")


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name}={value!r} must be at least {minimum}")
    return number


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    number = env_float(name, default, minimum=minimum)
    if number != int(number):
        raise ImproperlyConfigured(f"{name}={os.environ[name]!r} is not an integer")
    return int(number)


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of {', '.join(sorted(choices))}")
    return value


def env_choices(name: str, default: str, choices: set[str]) -> list[str]:
    """A comma-separated subset of ``choices``: ``"process,docker"`` → ["process", "docker"]."""
    values = [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]
    if unknown := sorted(set(values) - choices):
        raise ImproperlyConfigured(f"{name}: {', '.join(unknown)} not among {', '.join(sorted(choices))}")
    return list(dict.fromkeys(values))


def env_map(name: str, default: str) -> dict[str, list[str]]:
    """``"python=127.0.0.1:9092,java=127.0.0.1:9091|127.0.0.1:9191"`` → {runtime: [addresses]}."""
    value = os.environ.get(name, default)
    result: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, sep, addresses = item.partition("=")
        if not sep or not key or not addresses:
            raise ImproperlyConfigured(f"{name}: {item!r} is not runtime=address[|address...]")
        result[key.strip()] = [a.strip() for a in addresses.split("|") if a.strip()]
    return result


def local_secret_key(path: Path) -> str:
    """A per-installation random key kept in ``path`` (created 0600 on first use)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(key)
        return key
