"""Pages and small JSON endpoints; every read is scoped to the signed-in user."""

import json
from datetime import datetime

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext
from django.views.decorators.http import require_GET

from chat import names
from chat.accounts import selectors as account_selectors
from chat.conversations import exports, params
from chat.conversations import selectors as conversation_selectors
from chat.documents import views as document_views
from chat.errors import ChatError, ErrorCode, json_refusal
from chat.experiments import assignment
from chat.limits import quotas
from chat.replies import catalog


@login_required
def chat_page(request):
    """The chat page; conversations and messages load through the JSON endpoints. The settings panel's bounds
    and the person's defaults come with the page as JSON in a data attribute (escaped by the template): the
    page has no inline script of any kind."""
    config = {
        "bounds": params.bounds(),
        "defaults": conversation_selectors.chat_defaults_for(user=request.user),
        # The picker: the models this person may use, live or not (one without a worker is shown as unavailable;
        # a send to it gets the server's no_worker sentence).
        "models": catalog.models_for(request.user),
        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "attachments": document_views.page_config(),
    }
    return render(
        request,
        "chat/index.html",
        {
            "review_enabled": settings.CHAT_REVIEW_ENABLED,
            "chat_config": json.dumps(config),
            "quota": quotas.summary(request.user.pk),
            "may_chat": account_selectors.account_may_chat(user=request.user),
            "pending_notice": account_selectors.NOT_APPROVED,
            "socket_url": "/" + names.SOCKET_PATH,
        },
    )


def _json_error(exc: ChatError, status: int = 404):
    return json_refusal(exc, status)


def _cursor_text(cursor) -> str | None:
    return None if cursor is None else f"{int(cursor[0])}_{cursor[1].isoformat()}_{cursor[2]}"


def _cursor_parse(text: str) -> tuple | None:
    """``pinned_stamp_id``; a cursor of the release before pins (``stamp_id``) reads as unpinned."""
    pinned, _, rest = text.partition("_")
    if pinned not in ("0", "1"):
        pinned, rest = "0", text
    stamp, _, last_id = rest.rpartition("_")
    try:
        return pinned == "1", datetime.fromisoformat(stamp), int(last_id)
    except ValueError:
        raise ChatError(
            ErrorCode.BAD_CURSOR, gettext("That page of the list does not exist; reload the list.")
        ) from None


@login_required
@require_GET
def conversation_list(request):
    """A page of the person's conversations, pinned first, then newest first; ``q`` searches titles and
    messages, ``after`` is the ``next`` cursor of the previous page, ``folder`` (an id) one folder's,
    ``archived=1`` the archived ones, ``api=1`` includes the API's. The first page also lists the folders."""
    try:
        after = _cursor_parse(request.GET["after"]) if request.GET.get("after") else None
        folder = _folder_param(request.GET.get("folder"))
    except ChatError as exc:
        return _json_error(exc, 400)
    rows, cursor = conversation_selectors.conversation_page_for_user(
        user=request.user,
        query=request.GET.get("q", "")[:200],
        after=after,
        folder=folder,
        archived=request.GET.get("archived") == "1",
        with_api=request.GET.get("api") == "1",
    )
    body = {"conversations": rows, "next": _cursor_text(cursor)}
    if after is None:
        body["folders"] = conversation_selectors.folders_for_user(user=request.user)
    return JsonResponse(body)


def _folder_param(text: str | None) -> int | None:
    if not text:
        return None
    try:
        folder = int(text)
    except ValueError:
        folder = 0
    if not text.isascii() or not 0 < folder < 2**63:
        raise ChatError(ErrorCode.BAD_ID, gettext("folder must be a positive whole number."))
    return folder


@login_required
@require_GET
def conversation_detail(request, conversation_id: int):
    try:
        conversation = conversation_selectors.conversation_get_for_user(
            user=request.user, conversation_id=conversation_id
        )
    except ChatError as exc:
        return _json_error(exc)
    # The stored error too, so a failed reply still says why after a reload.
    messages = conversation_selectors.thread_for_user(user=request.user, conversation=conversation)
    return JsonResponse(
        {
            "conversation": {
                "id": conversation.id,
                "title": conversation.title,
                "system_prompt": conversation.system_prompt,
                "params": conversation.params,
                "model": assignment.shown_model(conversation),
            },
            "messages": messages,
        }
    )


@login_required
@require_GET
def quota(request):
    """The person's allowance and today's use (the chat page refreshes its line after each reply)."""
    return JsonResponse(quotas.summary(request.user.pk))


@login_required
@require_GET
def conversation_export(request, conversation_id: int, fmt: str):
    """Download one of the person's conversations as Markdown (``md``) or JSON (``json``)."""
    # JSON carries every branch (the import reads them back); Markdown the branch on show.
    read = (
        conversation_selectors.conversation_tree_for_export
        if fmt == "json"
        else conversation_selectors.conversation_for_export
    )
    try:
        conversation, messages = read(user=request.user, conversation_id=conversation_id)
    except ChatError as exc:
        return _json_error(exc)
    if fmt not in ("md", "json"):
        return _json_error(ChatError(ErrorCode.NOT_FOUND, gettext("Exports are .md or .json.")))
    if fmt == "json":
        body, kind = exports.as_json(conversation, messages), "application/json"
    else:
        body, kind = exports.as_markdown(conversation, messages), "text/markdown"
    response = HttpResponse(body, content_type=f"{kind}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="conversation-{conversation.pk}.{fmt}"'
    return response
