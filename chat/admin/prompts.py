"""Published prompts: staff with ``chat.publish_prompt`` see the prompts shared with everyone and take one back
(the Unpublish action). A person's private prompts are theirs alone: the panel never lists them."""

from __future__ import annotations

from django.contrib import admin, messages

from chat.admin.common import ReadOnly
from chat.models import Prompt
from chat.prompts import selectors, services


@admin.register(Prompt)
class PromptAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("shown_name", "title", "owner", "updated_at")
    list_select_related = ("owner",)
    fields = ("name", "title", "text", "owner", "published", "created_at", "updated_at")
    readonly_fields = fields
    actions = ["unpublish"]

    @admin.display(description="name", ordering="name")
    def shown_name(self, obj):
        return f"/{obj.name}"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(published=True)

    def has_module_permission(self, request):
        return selectors.may_publish(user=request.user)

    def has_view_permission(self, request, obj=None):
        return selectors.may_publish(user=request.user)

    def has_unpublish_permission(self, request):
        return selectors.may_publish(user=request.user)

    @admin.action(description="Unpublish the selected prompts", permissions=["unpublish"])
    def unpublish(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        count = services.prompts_unpublish(prompt_ids=ids)
        for prompt in Prompt.objects.filter(pk__in=ids):
            self.log_change(request, prompt, "Unpublished the prompt.")
        self.message_user(request, f"{count} prompt(s) unpublished.", messages.SUCCESS)
