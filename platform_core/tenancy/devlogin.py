"""The development login that ``make run`` makes once, so that the dashboard works at the first click.

Like the development API key (``var/dev_api_key``): made on the first start of the platform
from ``manage.py runplatform`` (what ``make run`` starts), kept in ``var/dev_login`` (mode
0600), and printed at every start. Never made for a production database (``DATABASE_URL``):
there accounts are made by the operator (``createsuperuser``, the admin).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

DEV_USERNAME = "dev"
FILE_NAME = "dev_login"


@dataclass(frozen=True)
class DevLogin:
    username: str
    password: str
    path: Path

    @property
    def banner(self) -> str:
        return (
            f"dashboard login (development): user {self.username!r}, password {self.password!r} (kept in {self.path})"
        )


def dev_login_ensure(*, var_dir: Path | None = None) -> DevLogin | None:
    """The development login, made on first use: a staff superuser ``dev`` with a random
    password kept in ``var/dev_login``. None with a production database (``DATABASE_URL``:
    anything but the embedded SQLite).

    The file is the record: a user whose file is gone (``var/`` cleaned) gets a new password.
    """
    if not str(settings.DATABASES["default"]["ENGINE"]).endswith("sqlite3"):
        return None  # a production database (DATABASE_URL)
    path = (var_dir or Path(settings.VAR_DIR)) / FILE_NAME
    users = get_user_model()
    if path.exists():
        username, _, password = path.read_text().strip().partition("\n")
        user = users.objects.filter(username=username).first()
        if user is not None and user.check_password(password):
            return DevLogin(username, password, path)
    password = secrets.token_urlsafe(12)
    user = users.objects.filter(username=DEV_USERNAME).first() or users(username=DEV_USERNAME)
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(f"{DEV_USERNAME}\n{password}\n")
    return DevLogin(DEV_USERNAME, password, path)
