"""The API keys page: a person creates a named key (shown once), sees their keys, revokes one."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from chat.api import selectors, services
from chat.errors import ChatError


@never_cache  # the response to a create holds the new key in plain text: no cache may keep it
@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request):
    """GET: the person's keys. POST: create one; the page shows it once, and never again."""
    new_key, error = None, None
    if request.method == "POST":
        try:
            new_key = services.api_key_create(
                owner=request.user,
                name=request.POST.get("name", ""),
                store_conversations=request.POST.get("store") == "on",
            ).plaintext
        except ChatError as exc:
            error = exc.detail
    return render(
        request,
        "chat/api_keys.html",
        {
            "keys": selectors.api_keys_for_user(user=request.user),
            "new_key": new_key,
            "error": error,
            "base_url": request.build_absolute_uri("/v1"),
            "review_enabled": settings.CHAT_REVIEW_ENABLED,
        },
        status=400 if error else 200,
    )


@login_required
@require_POST
def api_key_revoke(request, key_id: int):
    try:
        services.api_key_revoke(owner=request.user, key_id=key_id)
    except ChatError:
        pass  # not theirs, or gone: the list shows what is there
    return redirect("chat:api-keys")
