"""The upload endpoint of the chat page's attachments: ``POST /attachments/`` (multipart, one ``file``; the
session and its CSRF token, as every POST of the site) stores the person's pending attachment and answers its
id, name, size, pages and passages; ``DELETE /attachments/<id>/`` takes a pending one back. A refusal is JSON
with a stable code and a sentence, never an error page.

The size is refused from the request's ``Content-Length`` before the multipart body is parsed (nginx refuses it
earlier still: deploy/nginx/chat.conf). Extraction runs here, off the event loop in a thread of its own, bounded
in pages, characters and seconds (chat/documents/extract.py): the sockets and other people's requests go on."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from chat.documents import extract, selectors, services
from chat.errors import ChatError, ErrorCode

# Room for the multipart envelope around the file (boundaries, headers, the CSRF field).
ENVELOPE_BYTES = 64 * 1024

STATUS = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.FILE_TOO_LARGE: 413,
    ErrorCode.FILE_UNSUPPORTED: 415,
    ErrorCode.TOO_MANY_ATTACHMENTS: 409,
    ErrorCode.ATTACHMENTS_FULL: 409,
}


def _refusal(exc: ChatError) -> JsonResponse:
    return JsonResponse({"error": {"code": exc.code, "detail": exc.detail}}, status=STATUS.get(exc.code, 400))


def page_config() -> dict:
    """What the chat page's attach button needs to know (the bounds it checks before uploading)."""
    return {
        "max_bytes": settings.CHAT_ATTACHMENT_MAX_BYTES,
        "per_message": settings.CHAT_ATTACHMENTS_PER_MESSAGE,
    }


@login_required
@require_POST
async def attachment_upload(request):
    """The extraction runs in a thread of its own (``thread_sensitive=False``), never in the thread the database
    work of the sockets runs in; its work is bounded in pages, characters and seconds (extract.py)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    user = await request.auser()
    try:
        if declared > settings.CHAT_ATTACHMENT_MAX_BYTES + ENVELOPE_BYTES:
            raise services.too_large()
        upload = await sync_to_async(_the_file, thread_sensitive=False)(request)
        name = services.attachment_name(upload.name)
        await sync_to_async(services.attachment_admit)(user=user, name=name, size=upload.size)
        found = await sync_to_async(_extract, thread_sensitive=False)(name, upload)
        attachment = await sync_to_async(services.attachment_store)(user=user, name=name, size=upload.size, found=found)
    except ChatError as exc:
        return _refusal(exc)
    return JsonResponse({"attachment": selectors.attachment_payload(attachment)}, status=201)


def _the_file(request):
    upload = request.FILES.get("file")
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
