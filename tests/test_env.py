"""Production settings from URLs: DATABASE_URL and REDIS_URL (platform_core/env.py)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from platform_core.env import channel_layer_from_url, database_from_url, env_str


def test_a_postgres_url_becomes_a_pooled_database_entry():
    db = database_from_url("postgres://app:s%40cret@db.internal:6432/history?sslmode=require", pool_size=5)
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == (
        "history",
        "app",
        "s@cret",
        "db.internal",
        "6432",
    )
    assert db["OPTIONS"] == {"sslmode": "require", "pool": {"min_size": 1, "max_size": 5, "timeout": 10.0}}
    # Pooled connections are lent per use, never kept by a thread; a dropped one is replaced.
    assert db["CONN_MAX_AGE"] == 0 and db["CONN_HEALTH_CHECKS"] is True


def test_a_unix_socket_and_no_pool():
    db = database_from_url("postgresql:///platform?host=/run/postgresql", pool_size=0)
    assert (db["HOST"], db["PORT"], db["USER"]) == ("/run/postgresql", "", "")
    assert "pool" not in db["OPTIONS"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://x/y", "scheme 'mysql' is not supported"),
        ("postgres://host:5432/", "names no database"),
        ("postgres://host:port/db", "Port could not be cast"),
    ],
)
def test_bad_database_urls_fail_loudly_without_echoing_them(url, problem):
    with pytest.raises(ImproperlyConfigured, match=problem) as failure:
        database_from_url(url, pool_size=1)
    assert url not in str(failure.value)


def test_redis_url_switches_the_channel_layer_and_empty_keeps_the_in_memory_one():
    assert channel_layer_from_url("", prefix="asgi") == {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    layer = channel_layer_from_url("redis://:pw@redis:6379/0", prefix="pp")
    assert layer == {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": ["redis://:pw@redis:6379/0"], "prefix": "pp"},
    }
    with pytest.raises(ImproperlyConfigured) as failure:
        channel_layer_from_url("http://:pw@redis:6379", prefix="pp")
    assert "pw" not in str(failure.value)


def test_urls_with_passwords_can_come_from_files(tmp_path, monkeypatch):
    (tmp_path / "url").write_text("postgres://app:pw@db/platform\n")
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "url"))
    assert database_from_url(env_str("DATABASE_URL", ""), pool_size=1)["PASSWORD"] == "pw"
