"""Failed logins are throttled per account and per client address (admin and dashboard alike)."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="right-password", is_staff=True)


def _login(client: Client, path: str, username: str, password: str, address: str = "10.9.8.7"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_an_account_is_locked_after_five_failures_with_a_clear_message(alice, settings, path):
    client = Client()
    answers = [_login(client, path, "alice", "wrong", address=f"10.0.0.{i}").status_code for i in range(40)]
    assert answers[:4] == [200] * 4  # the form again, with its error; the fifth failure locks
    assert set(answers[4:]) == {429}
    locked = _login(client, path, "alice", "right-password", address="10.0.0.99")
    assert locked.status_code == 429, "the right password does not open a locked account"
    assert b"Too many failed logins" in locked.content and b"Try again in" in locked.content


def test_one_client_address_is_locked_whatever_accounts_it_tries(alice):
    client = Client()
    answers = [_login(client, "/accounts/login/", f"user{i}", "guess").status_code for i in range(8)]
    assert answers[:4] == [200] * 4 and set(answers[4:]) == {429}
    elsewhere = _login(Client(), "/accounts/login/", "alice", "right-password", address="10.1.1.1")
    assert elsewhere.status_code == 302, "another address and a good password still get in"
