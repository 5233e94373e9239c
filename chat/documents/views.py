"""The upload endpoint of the chat page's attachments: ``POST /attachments/`` (multipart, one ``file``; the
session and its CSRF token, as every POST of the site) stores the person's pending attachment and answers its
id, name, size, pages and passages; ``DELETE /attachments/<id>/`` takes a pending one back. A refusal is JSON
with a stable code and a sentence, never an error page.

The size is refused from the request's ``Content-Length`` before the multipart body is parsed, and CSRF is checked
only after that (Django's check parses the body). Under ASGI the server has buffered the body by then (to a
temporary file past 2.5 MB): the real bound at the door is nginx's ``client_max_body_size`` (deploy/nginx/chat.conf).
Extraction runs off the event loop in a small pool of its own (``EXTRACTION``), never in the pool the sockets'
Redis and database calls use, and each person reads one file at a time (a Redis key held while it runs): a person
uploading many hostile files at once waits on themself, and everyone else's requests go on. Extraction is bounded
in pages, characters and seconds (chat/documents/extract.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from chat.documents import extract, selectors, services
from chat.errors import ChatError, ErrorCode, json_refusal

# The pool that reads files: two threads, whatever the number of uploads, so the event loop's default pool
# (the sockets' Redis calls, the sweep) is never filled by extraction.
EXTRACTION = ThreadPoolExecutor(max_workers=2, thread_name_prefix="extract")

# Room for the multipart envelope around the file (boundaries, headers, the CSRF field).
ENVELOPE_BYTES = 64 * 1024

STATUS = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.FILE_TOO_LARGE: 413,
    ErrorCode.FILE_UNSUPPORTED: 415,
    ErrorCode.TOO_MANY_ATTACHMENTS: 409,
    ErrorCode.ATTACHMENTS_FULL: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.FORBIDDEN: 403,
}


def _refusal(exc: ChatError) -> JsonResponse:
    return json_refusal(exc, STATUS.get(exc.code, 400))


def page_config() -> dict:
    """What the chat page's attach button needs to know (the bounds it checks before uploading)."""
    return {
        "max_bytes": settings.CHAT_ATTACHMENT_MAX_BYTES,
        "per_message": settings.CHAT_ATTACHMENTS_PER_MESSAGE,
    }


@login_required
@csrf_exempt  # checked in _the_file, once the size is known to be bounded: Django's check parses the body
@require_POST
async def attachment_upload(request):
    """The extraction runs in ``EXTRACTION``'s threads, one file at a time per person; its work is bounded in
    pages, characters and seconds (extract.py)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    user = await request.auser()
    if declared > settings.CHAT_ATTACHMENT_MAX_BYTES + ENVELOPE_BYTES:
        return _refusal(services.too_large())
    try:
        async with services.one_file_at_a_time(user.pk):
            upload = await sync_to_async(_the_file, thread_sensitive=False, executor=EXTRACTION)(request)
            name = services.attachment_name(upload.name)
            await sync_to_async(services.attachment_admit)(user=user, name=name, size=upload.size)
            found = await sync_to_async(_extract, thread_sensitive=False, executor=EXTRACTION)(name, upload)
            attachment = await sync_to_async(services.attachment_store)(
                user=user, name=name, size=upload.size, found=found
            )
    except ChatError as exc:
        return _refusal(exc)
    return JsonResponse({"attachment": selectors.attachment_payload(attachment)}, status=201)


def _the_file(request):
    try:  # the CSRF check reads the form first (its token field), so a malformed body fails there
        refused = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
        upload = None if refused is not None else request.FILES.get("file")
    except MultiPartParserError:
        raise ChatError(ErrorCode.FILE_UNREADABLE, _("The upload could not be read: try again.")) from None
    if refused is not None:
        raise ChatError(ErrorCode.FORBIDDEN, _("This page is out of date or was not sent by this site: reload it."))
    if upload is None:
        raise ChatError(ErrorCode.EMPTY, _("Choose a file to attach."))
    if upload.size > settings.CHAT_ATTACHMENT_MAX_BYTES:
        raise services.too_large()
    return upload


def _extract(name: str, upload):
    return extract.extract(name, upload.read(), services.limits())


@login_required
@require_http_methods(["GET"])
def attachment_pending(request):
    """The person's attachments not yet sent (the page shows them again after a reload)."""
    return JsonResponse({"attachments": selectors.attachments_pending_for_user(user=request.user)})


@login_required
@require_http_methods(["DELETE"])
def attachment_remove(request, attachment_id: int):
    try:
        services.attachment_remove_pending(user=request.user, attachment_id=attachment_id)
    except ChatError as exc:
        return _refusal(exc)
    return JsonResponse({"removed": attachment_id})
