"""The audit trail: superusers read it, filtered by action, actor, conversation, message and date; nobody adds,
edits or deletes a row through the admin."""

from __future__ import annotations

from django.contrib import admin

from chat.admin.common import ReadOnly, TextFilter
from chat.models import AuditEvent


class ActorFilter(TextFilter):
    title = "actor (username)"
    parameter_name = "actor"
    lookup = "actor_name__iexact"


class IdFilter(TextFilter):
    """An id typed into a box; one that is not an id matches nothing (rather than Django's error page)."""

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not (value.isascii() and value.isdigit() and len(value) <= 18):  # a BIGINT holds 18 digits, always
            return queryset.none()
        return queryset.filter(**{self.lookup: int(value)})


class ConversationFilter(IdFilter):
    title = "conversation id"
    parameter_name = "conversation_id"
    lookup = "conversation_id"


class MessageFilter(IdFilter):
    title = "message id"
    parameter_name = "message_id"
    lookup = "message_id"


def _superuser(request) -> bool:
    return bool(request.user.is_active and request.user.is_superuser)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("created_at", "actor_name", "action", "conversation_id", "message_id", "details")
    list_filter = ("action", ActorFilter, ConversationFilter, MessageFilter, "created_at")
    date_hierarchy = "created_at"
    search_fields = ("actor_name",)
    list_per_page = 100
    readonly_fields = ("created_at", "actor", "actor_name", "action", "conversation_id", "message_id", "details")
    raw_id_fields = ("actor",)
    actions = None  # not even the site-wide delete

    def has_module_permission(self, request):
        return _superuser(request)

    def has_view_permission(self, request, obj=None):
        return _superuser(request)
