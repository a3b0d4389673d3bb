"""Idempotency-Key storage rules (the database, no HTTP): per tenant, fingerprinted, kept 24 h."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from platform_core.gateway import errors, idempotency
from platform_core.invocations.models import IdempotencyKey

pytestmark = pytest.mark.django_db


def _claim(tenant: str, key: str, body: bytes, invocation_id: str) -> str | None:
    fingerprint = idempotency.fingerprint(route="invoke/p", body=body)
    return idempotency._claim(tenant_id=tenant, key=key, fingerprint=fingerprint, invocation_id=invocation_id)


def test_first_use_records_then_the_same_request_follows_the_first():
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert _claim("t", "k", b"{}", first) is None
    assert _claim("t", "k", b"{}", second) == first
    assert _claim("other", "k", b"{}", second) is None  # keys are a tenant's own


def test_another_body_is_refused():
    _claim("t", "k2", b'{"a": 1}', str(uuid.uuid4()))
    with pytest.raises(errors.IdempotencyMismatch):
        _claim("t", "k2", b'{"a": 2}', str(uuid.uuid4()))


def test_a_key_older_than_24_hours_may_be_used_again():
    old = str(uuid.uuid4())
    _claim("t", "k3", b"{}", old)
    IdempotencyKey.objects.filter(key="k3").update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    new = str(uuid.uuid4())
    assert _claim("t", "k3", b'{"other": true}', new) is None
    assert str(IdempotencyKey.objects.get(key="k3").invocation_id) == new
