"""Issue 11, item 7: the key ``make run`` prints works against the database in use, also after
switching from the laptop's SQLite to PostgreSQL (``DATABASE_URL``)."""

from __future__ import annotations

import pytest

from tests.e2e.test_runplatform import RunPlatform
from tests.support.platform import Platform
from tests.support.services import fresh_postgres_database

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


def test_the_dev_key_made_on_sqlite_works_after_switching_to_postgresql(production_services):
    platform = Platform()
    try:
        platform.manage("migrate", "--noinput", "-v0")
        with RunPlatform(platform) as run:
            assert run.subtract().status_code == 200
        key = (platform.workdir / "dev_api_key").read_text()
        with fresh_postgres_database() as database_url:
            platform.env["DATABASE_URL"] = database_url
            platform.manage("migrate", "--noinput", "-v0")
            with RunPlatform(platform, DATABASE_URL=database_url) as switched:
                answer = switched.subtract()
                assert answer.status_code == 200, answer.text
        assert (platform.workdir / "dev_api_key").read_text() == key, "the same key, not a new one"
    finally:
        platform.stop()
