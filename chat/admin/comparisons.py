"""Compares as a list: which person compared which two models, blind or not, and which reply they picked.

No text is on it, so, like every list, showing it is not audited; a row opens its transcript at the compared
message (the conversation's page, the one audited way into anyone's words). Reviewers only, read-only.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from chat.admin.common import ModelFilter, ReviewerOnly, YesNoFilter
from chat.models import Comparison
from chat.review import selectors, services


class ComparedModelFilter(ModelFilter):
    """Compares with this model on either side."""

    title = "a model compared"

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(Q(first_model=value) | Q(second_model=value)) if value else queryset


class PickedFilter(YesNoFilter):
    title = "picked"
    parameter_name = "picked"
    annotation = "picked"


def _transcript_url(conversation_id: int, message_id: int) -> str:
    return reverse("admin:chat_conversation_change", args=[conversation_id]) + f"#m{message_id}"


@admin.register(Comparison)
class ComparisonAdmin(ReviewerOnly, admin.ModelAdmin):
    list_display = (
        "open_link",
        "owner",
        "first_model",
        "second_model",
        "blind",
        "winner",
        "created_at",
        "picked_at",
    )
    list_display_links = None  # the transcript is the page of a Compare
    list_filter = (ComparedModelFilter, PickedFilter, "blind", "created_at")
    list_per_page = 100
    ordering = ("-created_at", "-id")

    def get_queryset(self, request):
        return selectors.comparisons_for_review()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Its page is the transcript's, where opening it is audited.
        if not services.can_review(request.user):
            raise PermissionDenied
        row = self.get_queryset(request).filter(pk=unquote(object_id)).values("conversation_id", "prompt_id").first()
        if row is None:
            raise Http404("No such comparison.")
        return HttpResponseRedirect(_transcript_url(row["conversation_id"], row["prompt_id"]))

    @admin.display(description="compared message", ordering="prompt_id")
    def open_link(self, obj):
        return format_html(
            '<a href="{}">#{} in conversation {}</a>',
            _transcript_url(obj.conversation_id, obj.prompt_id),
            obj.prompt_id,
            obj.conversation_id,
        )

    @admin.display(description="owner", ordering="owner_name")
    def owner(self, obj):
        return obj.owner_name

    @admin.display(description="first (shown first)", ordering="first_model")
    def first_model(self, obj):
        return obj.first_model

    @admin.display(description="second", ordering="second_model")
    def second_model(self, obj):
        return obj.second_model

    @admin.display(description="picked", ordering="chosen_model")
    def winner(self, obj):
        if obj.chosen_id is None:
            return "not yet"
        side = "first" if obj.chosen_id == obj.first_id else "second"
        return f"{obj.chosen_model} ({side})"
