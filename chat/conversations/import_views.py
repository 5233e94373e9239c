"""The import page (``/conversations/import/``): upload a ChatGPT ``conversations.json`` or this site's own
``.json`` export; multipart, the session's login and CSRF. The page's form gets the chat page back with the first
imported conversation open; a client that asks for JSON (``Accept: application/json``) gets the ids, and a refusal
as ``{"error": {"code", "detail"}}`` (docs/api.md, "Importing conversations").

An upload is read, checked and stored in a small pool of its own (``IMPORTS``), never in the one thread that runs
every socket's database calls: storing 20,000 messages takes seconds, and another person's message waited on it."""

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import close_old_connections
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from chat.conversations import imports
from chat.conversations.import_services import conversations_import
from chat.errors import ChatError, ErrorCode, json_refusal

STATUS = {
    ErrorCode.IMPORT_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.NOT_APPROVED: 403,
    ErrorCode.UNAVAILABLE: 503,  # Redis away: the hour's uploads cannot be counted
}
IMPORTS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="import")
# Room for the multipart envelope (boundaries, headers, the CSRF field) around a file of the largest size.
ENVELOPE = 64 * 1024


def _max_mb() -> str:
    return f"{settings.CHAT_IMPORT_MAX_BYTES / (1024 * 1024):g}"


def _answer(request, *, error: ChatError | None = None, ids=None, status=200):
    if "application/json" in request.headers.get("Accept", ""):
        if error is not None:
            return json_refusal(error, status)
        return JsonResponse({"conversations": ids}, status=201)
    if error is None:
        return redirect(reverse("chat:index") + f"#{ids[0]}")
    return render(
        request,
        "chat/import.html",
        {"error": error, "max_mb": _max_mb()},
        status=status,
    )


@login_required
@csrf_exempt  # CSRF is checked in _upload, once the size is known to be bounded: Django's check reads the body
@require_http_methods(["GET", "POST"])
async def import_page(request):
    if request.method == "GET":
        return await sync_to_async(render)(request, "chat/import.html", {"max_mb": _max_mb()})
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.CHAT_IMPORT_MAX_BYTES + ENVELOPE:
        return await sync_to_async(_answer)(request, error=imports.too_large(), status=413)
    return await sync_to_async(_upload_in_its_pool, thread_sensitive=False, executor=IMPORTS)(request)


def _upload_in_its_pool(request):
    # This thread's database connection is not the request's: closed here when it is too old or broken, as
    # Django does for a request's own at its start and end.
    close_old_connections()
    try:
        return _upload(request)
    finally:
        close_old_connections()


@csrf_protect
def _upload(request):
    upload = request.FILES.get("file")
    if upload is None:
        error = ChatError(ErrorCode.IMPORT_INVALID, _("Choose a file to import."))
        return _answer(request, error=error, status=400)
    if upload.size > settings.CHAT_IMPORT_MAX_BYTES:
        return _answer(request, error=imports.too_large(), status=413)
    try:
        ids = conversations_import(user=request.user, data=upload.read(settings.CHAT_IMPORT_MAX_BYTES + 1))
    except ChatError as exc:
        return _answer(request, error=exc, status=STATUS.get(exc.code, 400))
    return _answer(request, ids=ids, status=201)
