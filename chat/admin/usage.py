"""The usage page: messages, tokens, speed and failures per day and per person over a chosen range of days.

A page of figures, not a list of rows: ``UsageReport`` (a proxy of ``Message``) gives it a place in the admin
index and its permissions, and ``changelist_view`` renders the page. It shows no message text, so it has no
other URL (no change page, no history).
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from chat.admin.common import ReviewerOnly
from chat.errors import ErrorCode
from chat.models import UsageReport
from chat.review import usage

_DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
_BAD_DATE = _("Enter a date as YYYY-MM-DD.")


class UsageRangeForm(forms.Form):
    """``?from=YYYY-MM-DD&to=YYYY-MM-DD``; either left out means the default range's end of that side."""

    def __init__(self, query):
        start, end = usage.default_range()
        data = {"from": query.get("from") or start.isoformat(), "to": query.get("to") or end.isoformat()}
        super().__init__(data)
        # "from" is a Python keyword, so the fields are named here rather than declared on the class.
        self.fields["from"] = forms.DateField(label=_("From"), widget=_DATE, error_messages={"invalid": _BAD_DATE})
        self.fields["to"] = forms.DateField(label=_("To"), widget=_DATE, error_messages={"invalid": _BAD_DATE})

    def clean(self):
        data = super().clean()
        start, end = data.get("from"), data.get("to")
        if start is None or end is None:
            return data
        if start > end:
            raise ValidationError(_("The start date is after the end date."), code=ErrorCode.RANGE_REVERSED)
        if (end - start).days + 1 > usage.MAX_DAYS:
            raise ValidationError(
                _("The range is %(days)s days; at most %(max_days)s fit on one page.")
                % {"days": (end - start).days + 1, "max_days": usage.MAX_DAYS},
                code=ErrorCode.RANGE_TOO_LONG,
            )
        return data

    @property
    def range(self) -> tuple[dt.date, dt.date]:
        return self.cleaned_data["from"], self.cleaned_data["to"]


@admin.register(UsageReport)
class UsageReportAdmin(ReviewerOnly, admin.ModelAdmin):
    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [path("", self.admin_site.admin_view(self.changelist_view), name="%s_%s_changelist" % info)]

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = UsageRangeForm(request.GET)
        report = None
        if form.is_valid():
            start, end = form.range
            report = usage.usage_report(start=start, end=end)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Usage",
            "form": form,
            "report": report,
            "chart": usage.chart_data(report) if report else None,
            "time_zone": timezone.get_current_timezone_name(),
            "max_days": usage.MAX_DAYS,
            "top_people": usage.TOP_PEOPLE,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/chat/usage.html", context)
