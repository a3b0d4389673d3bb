"""The machine's PostgreSQL and Redis for the deployment tests, used for real and left as found.

Each test run gets a database of its own (``plugin_platform_test_<random>``, created and dropped
here; no other database is touched) and a channel-layer prefix of its own in Redis (its keys
are deleted at the end), so that runs on one machine (a developer's and CI's) cannot meet.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

# Where to create and drop the test databases: a role allowed to CREATE DATABASE.
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def services_missing() -> str:
    """Why the deployment tests cannot run here ('' when PostgreSQL and Redis both answer)."""
    import psycopg
    import redis

    problems = []
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        problems.append(f"PostgreSQL at {_public(POSTGRES_ADMIN_URL)}: {exc}".strip())
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except redis.RedisError as exc:
        problems.append(f"Redis at {_public(REDIS_URL)}: {exc}")
    return "; ".join(problems)


def _public(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=netloc))


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new empty database on the server; its URL. Dropped afterwards, connections and all."""
    import psycopg
    from psycopg import sql

    name = f"plugin_platform_test_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(POSTGRES_ADMIN_URL, name)
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A channel-layer prefix of this run's own; its keys are removed afterwards."""
    import redis

    prefix = f"plugin_platform_test_{secrets.token_hex(4)}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
