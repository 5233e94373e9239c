"""Per-person allowances: staff with the model's permissions give one person their own messages per minute,
tokens per day or replies at once (``chat/limits/quotas.py``); the list shows what each has used today."""

from __future__ import annotations

from django.contrib import admin

from chat.limits import quotas
from chat.models import QuotaOverride


@admin.register(QuotaOverride)
class QuotaOverrideAdmin(admin.ModelAdmin):
    list_display = ("user", "messages_per_minute", "tokens_per_day", "max_active", "used_today", "note", "updated_at")
    list_select_related = ("user",)
    search_fields = ("user__username",)
    raw_id_fields = ("user",)
    fields = ("user", "messages_per_minute", "tokens_per_day", "max_active", "note")

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # Today's use of every row on the page in one Redis round trip, not one per row; kept on the rows
        # (the page's evaluated queryset), never on this admin, which every request shares.
        rows = list(changelist.result_list)
        used = quotas.tokens_used_today_many([row.user_id for row in rows])
        for row in rows:
            row.used_today_tokens = used.get(row.user_id)
        return changelist

    @admin.display(description="tokens used today")
    def used_today(self, obj):
        used = getattr(obj, "used_today_tokens", None)
        return "—" if used is None else f"{used:,}"
