"""Pages and small JSON endpoints; every read is scoped to the signed-in user."""
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from . import events, quotas, selectors
from .errors import ChatError


@login_required
def chat_page(request):
    """The chat page; conversations and messages load through the JSON endpoints."""
    return render(request, "chat/index.html", {"review_enabled": settings.CHAT_REVIEW_ENABLED,
                                               "quota": quotas.summary(request.user.pk),
                                               "may_chat": selectors.account_may_chat(user=request.user),
                                               "not_approved": selectors.NOT_APPROVED})


def _json_error(exc: ChatError, status: int = 404):
    return JsonResponse({"error": {"code": exc.code, "detail": exc.detail}}, status=status)


@login_required
@require_GET
def conversation_list(request):
    rows = selectors.conversation_list_for_user(user=request.user).values("id", "title", "updated_at")[:200]
    return JsonResponse({"conversations": list(rows)})


@login_required
@require_GET
def conversation_detail(request, conversation_id: int):
    try:
        conversation = selectors.conversation_get_for_user(user=request.user, conversation_id=conversation_id)
    except ChatError as exc:
        return _json_error(exc)
    # The stored error too, so a failed reply still says why after a reload.
    messages = [{**events.message_payload(m), "error": m.error}
                for m in selectors.messages_current(conversation=conversation)]
    return JsonResponse({"conversation": {"id": conversation.id, "title": conversation.title},
                         "messages": messages})


@login_required
@require_GET
def quota(request):
    """The person's allowance and today's use (the chat page refreshes its line after each reply)."""
    return JsonResponse(quotas.summary(request.user.pk))


def healthz(request):
    """The process answers (liveness probe)."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Can this deployment answer a chat now: database, Redis, and at least one live model worker."""
    from django.db import connection

    from redis.exceptions import BusyLoadingError

    from . import liveness
    from .redis import client

    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        client().ping()
        checks["redis"] = "ok"
        checks["workers"] = len(liveness.workers_alive())
    except BusyLoadingError:
        checks["redis"] = "loading its data from disk"
        checks["workers"] = 0
    except Exception as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
        checks["workers"] = 0
    ready = checks["database"] == "ok" and checks["redis"] == "ok" and checks["workers"] > 0
    if checks["redis"] == "ok" and not checks["workers"]:
        checks["detail"] = "no model worker is running"
    return JsonResponse({"ready": ready, **checks}, status=200 if ready else 503)
