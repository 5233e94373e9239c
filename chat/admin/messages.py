"""Messages, people's feedback and reviewers' gold answers, as read-only lists with their metrics."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from chat.admin.common import (
    AuditedOpen,
    AuditedSearch,
    ModelFilter,
    RatingColumns,
    ReviewerOnly,
    TextFilter,
)
from chat.models import Feedback, GoldAnswer, Message
from chat.review import selectors


class RatingFilter(admin.SimpleListFilter):
    title = "rating"
    parameter_name = "rating"

    def lookups(self, request, model_admin):
        return [("up", "👍 any"), ("down", "👎 any"), ("none", "not rated")]

    def queryset(self, request, queryset):
        match self.value():
            case "up":
                return queryset.filter(thumbs_up__gt=0)
            case "down":
                return queryset.filter(thumbs_down__gt=0)
            case "none":
                return queryset.filter(thumbs_up=0, thumbs_down=0)
        return queryset


class ReplyModelFilter(ModelFilter):
    """The model that wrote each reply: its own name, which for a Compare reply differs from its conversation's
    (and the conversation's model may have changed since)."""

    title = "model (that wrote the reply)"


class MessageOwnerFilter(TextFilter):
    title = "owner (username)"
    parameter_name = "owner"
    lookup = "conversation__owner__username__iexact"


def _conversation_link(conversation_id: int, label) -> str:
    # One line, cut to the column's width by static/chat/admin/lists.css; the whole title in the tooltip.
    return format_html(
        '<a class="cut" href="{}" title="{}">{}</a>',
        reverse("admin:chat_conversation_change", args=[conversation_id]),
        label,
        label,
    )


@admin.register(Message)
class MessageAdmin(RatingColumns, AuditedOpen, AuditedSearch, ReviewerOnly, admin.ModelAdmin):
    list_display = (
        "id",
        "conversation_link",
        "owner",
        "role",
        "status_column",
        "model_name",
        "worker",
        "tokens_column",
        "ttft_ms",
        "tokens_per_s",
        "thumbs_up",
        "thumbs_down",
        "is_current",
        "created_at",
    )
    list_filter = (
        "status",
        "finish_reason",
        ReplyModelFilter,
        RatingFilter,
        "role",
        "is_current",
        MessageOwnerFilter,
        "created_at",
    )
    search_fields = ("content",)
    # No date hierarchy here: its DISTINCT over every message's day costs more than the rest of the page on a
    # big site (docs/review-panel.md); the created_at filter above narrows by date instead.
    list_select_related = ("conversation__owner",)
    list_per_page = 100
    show_full_result_count = False  # a second count of every message on each filtered page
    raw_id_fields = ("conversation", "parent")
    fields = (
        "conversation",
        "parent",
        "is_current",
        "role",
        "status",
        "finish_reason",
        "content",
        "error",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "tokens_per_s",
        "model_name",
        "worker",
        "params",
        "dropped_messages",
        "stop_requested",
        "created_at",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return selectors.messages_for_review()

    def message_of(self, obj):
        return obj

    # Two facts a column each would not fit 1280 px beside the filters (static/chat/admin/lists.css): one column.
    @admin.display(description="status (finish)", ordering="status")
    def status_column(self, obj):
        reason = f" ({obj.get_finish_reason_display().lower()})" if obj.finish_reason else ""
        return f"{obj.get_status_display()}{reason}"

    @admin.display(description="tokens (prompt → reply)", ordering="completion_tokens")
    def tokens_column(self, obj):
        if obj.prompt_tokens is None and obj.completion_tokens is None:
            return "—"
        return f"{obj.prompt_tokens or 0} → {obj.completion_tokens or 0}"

    @admin.display(description="conversation", ordering="conversation")
    def conversation_link(self, obj):
        return _conversation_link(obj.conversation_id, obj.conversation)

    @admin.display(description="owner", ordering="conversation__owner__username")
    def owner(self, obj):
        return obj.conversation.owner


@admin.register(Feedback)
class FeedbackAdmin(AuditedOpen, AuditedSearch, ReviewerOnly, admin.ModelAdmin):
    list_display = ("id", "rating", "comment", "message_link", "user", "created_at")
    list_filter = ("rating", "created_at")
    search_fields = ("comment",)
    list_select_related = ("user", "message")
    raw_id_fields = ("message", "user")
    readonly_fields = ("message", "user", "rating", "comment", "created_at", "updated_at")

    @admin.display(description="reply")
    def message_link(self, obj):
        return format_html(
            '<a href="{}#m{}">#{}</a>',
            reverse("admin:chat_conversation_change", args=[obj.message.conversation_id]),
            obj.message_id,
            obj.message_id,
        )


@admin.register(GoldAnswer)
class GoldAnswerAdmin(AuditedOpen, AuditedSearch, ReviewerOnly, admin.ModelAdmin):
    """Listed here; written from the conversation page (through ``chat.review.services.gold_answer_set``)."""

    list_display = ("id", "message_link", "content", "author", "updated_at")
    search_fields = ("content",)
    list_select_related = ("author", "message")
    raw_id_fields = ("message", "author")
    readonly_fields = ("message", "content", "author", "created_at", "updated_at")

    @admin.display(description="reply")
    def message_link(self, obj):
        return format_html(
            '<a href="{}">#{}</a>',
            reverse("admin:chat_conversation_gold", args=[obj.message.conversation_id, obj.message_id]),
            obj.message_id,
        )
