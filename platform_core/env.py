"""Typed readers for settings from environment variables; bad values fail loudly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

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


def env_int_list(name: str, default: str, *, minimum: int = 0) -> list[int]:
    """``$NAME`` as comma-separated integers, each at least ``minimum``."""
    raw = env_str(name, default)
    try:
        values = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a comma-separated list of integers") from None
    if any(value < minimum for value in values):
        raise ImproperlyConfigured(f"{name}={raw!r}: every value must be at least {minimum}")
    return values


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


def database_from_url(url: str, *, pool_size: int) -> dict[str, Any]:
    """A ``DATABASES`` entry for ``postgres://user:password@host:port/name?sslmode=require``.

    Query parameters are libpq options (``sslmode``, ``connect_timeout``...); ``?host=/run/postgresql``
    reaches a server over its Unix socket. Connections come from a psycopg pool of at most
    ``pool_size`` per process (0: no pool, a new connection per request): under ASGI each request
    runs its sync code in a thread of its own, so Django's persistent connections would leak
    one per thread instead of being reused.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(f"DATABASE_URL: scheme {parts.scheme!r} is not supported; use postgres://...")
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL names no database: postgres://user@host:port/NAME")
    try:
        port = parts.port
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL: {exc}") from None
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    host = options.pop("host", "") or unquote(parts.hostname or "")
    if pool_size:
        # The pool checks a connection before lending it: one that the server dropped (restart,
        # failover, idle timeout) is replaced instead of failing the next query.
        options["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": 10.0}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(port or ""),
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": options,
    }


def channel_layer_from_url(url: str, *, prefix: str) -> dict[str, Any]:
    """The Redis channel layer for ``redis://[:password@]host:port/db`` (``rediss://``: TLS),
    or the in-memory layer (one process only) when ``url`` is empty."""
    if not url:
        return {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    if urlsplit(url).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(f"REDIS_URL={url.split('@')[-1]!r} is not a redis://, rediss:// or unix:// URL")
    return {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url], "prefix": prefix}}
