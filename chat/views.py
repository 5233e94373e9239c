"""Pages and small JSON endpoints; every read is scoped to the signed-in user."""
from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from . import events, selectors
from .errors import ChatError


@login_required
def chat_page(request):
    """The chat page; conversations and messages load through the JSON endpoints."""
    return render(request, "chat/index.html", {"review_enabled": settings.CHAT_REVIEW_ENABLED})


def signup(request):
    """Create an account and sign in."""
    if request.user.is_authenticated:
        return redirect("chat:index")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:index")
    return render(request, "registration/signup.html", {"form": form})


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
