"""API keys: staff with the view permission see every key (never its hash); those with the change permission
revoke keys with the list's action. Nothing else about a key changes here."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from chat.api import services
from chat.models import ApiKey


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request, queryset):
        if self.value() in ("active", "revoked"):
            return queryset.filter(revoked_at__isnull=self.value() == "active")
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "shown_prefix", "store_conversations", "created_at", "last_used_at", "revoked_at")
    list_filter = (ActiveFilter, "store_conversations", "created_at")
    search_fields = ("name", "prefix", "owner__username")
    list_select_related = ("owner",)
    fields = ("name", "owner", "shown_prefix", "store_conversations", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description="key")
    def shown_prefix(self, obj):
        return f"sk-{obj.prefix}-…"

    def get_queryset(self, request):
        return super().get_queryset(request).defer("secret_hash")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a key's conversations keep its name; revoking is how a key ends

    def has_revoke_permission(self, request):
        return request.user.has_perm("chat.change_apikey")

    @admin.action(description="Revoke the selected keys", permissions=["revoke"])
    def revoke(self, request, queryset):
        for key_id in queryset.values_list("pk", flat=True):
            key = services.api_key_revoke(key_id=key_id)
            # Django's admin history records form edits, not actions: say who revoked whose key.
            self.log_change(request, key, f"Revoked the key (owner {key.owner_id}).")
        self.message_user(request, _("%(value1)s key(s) revoked.") % {"value1": queryset.count()}, messages.SUCCESS)
