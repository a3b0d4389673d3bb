"""Forms of the dashboard's pages (the plugin forms are generated: see ``schema_forms``)."""

from __future__ import annotations

import re

from django import forms

from dashboard.selectors import HistoryFilters
from platform_core.invocations.models import Status

_SESSION = re.compile(r"^dash-[0-9a-f]{32}$")


def session_valid(value: str) -> bool:
    return bool(_SESSION.match(value))


class HistoryFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200)
    args = forms.CharField(required=False, max_length=500)
    worker = forms.CharField(required=False, max_length=100)
    plugin = forms.CharField(required=False, max_length=100)
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *Status.choices])
    tenant = forms.CharField(required=False, max_length=100)
    since = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def filters(self) -> HistoryFilters:
        """The valid filters (a field with a bad value does not filter)."""
        self.is_valid()
        data = self.cleaned_data
        return HistoryFilters(
            plugin=data.get("plugin") or "",
            status=data.get("status") or "",
            tenant=data.get("tenant") or "",
            since=data.get("since"),
            until=data.get("until"),
            text=data.get("q") or "",
            worker=data.get("worker") or "",
            arguments=data.get("args") or "",
        )
