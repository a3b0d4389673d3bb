# The supervisor tests' private socket root (checked for leftover workers), for the workers board.
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.supervisor.conftest import socket_root  # noqa: F401


def login_cookie(username: str = "ops", *, staff: bool = True, tenant: str | None = None) -> bytes:
    """A session cookie header value of a (new or existing) dashboard user."""
    from platform_core.tenancy.models import Tenant, TenantMember

    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": staff})
    if tenant:
        TenantMember.objects.update_or_create(
            user=user, defaults={"tenant": Tenant.objects.get_or_create(slug=tenant)[0]}
        )
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
def client(client, django_user_model):
    """Django's test client, logged in as a staff user (the dashboard needs a login)."""
    user = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(user)
    return client
