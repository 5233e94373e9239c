"""The review panel (grows into a package with review states, notes and exports)."""
from django.contrib import admin

from .models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "status", "is_current", "content", "completion_tokens", "ttft_ms", "tokens_per_s")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "owner", "model_name", "created_at", "updated_at")
    list_filter = ("model_name", "created_at")
    search_fields = ("title", "owner__username")
    list_select_related = ("owner",)
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "status", "finish_reason", "completion_tokens", "ttft_ms",
                    "tokens_per_s", "created_at")
    list_filter = ("role", "status", "finish_reason", "model_name")
    search_fields = ("content",)
    list_select_related = ("conversation",)
    readonly_fields = ("created_at", "started_at", "finished_at")
    raw_id_fields = ("conversation", "parent")
