"""A person's own data as one JSON document, written piece by piece (reads only).

Streamed, so a history of any length costs one chunk of rows in memory: conversations and messages are read
in id order with keyset pages (no cursor held open between chunks, so it works the same on SQLite, on
PostgreSQL and behind a connection pooler). The document holds what the person wrote or was answered, their
feedback, their Compares (which two replies, which model wrote each, their pick) and their share links (revoked
ones too), their saved prompts, their folders and which conversations are pinned, archived or filed; staff's
review notes about them are not theirs to export.
"""

from __future__ import annotations

import json
from typing import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import F
from django.utils import timezone

from chat.models import Account, Attachment, Comparison, Conversation, Feedback, Folder, Message, Prompt, ShareLink

FORMAT = "chat-personal-data/1"
PAGE = 500  # rows per query
CONVERSATION_FIELDS = (
    "id",
    "title",
    "system_prompt",
    "model_name",
    "params",
    "created_at",
    "updated_at",
    "pinned",
    "archived_at",
    "folder_id",
)
FOLDER_FIELDS = ("id", "name", "created_at")
MESSAGE_FIELDS = (
    "id",
    "parent_id",
    "is_current",
    "role",
    "content",
    "status",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "tokens_per_s",
    "model_name",
    "params",
    "error",
    "sources",
    "created_at",
    "started_at",
    "finished_at",
)
# Documents attached to messages, as the text extracted from them (the files themselves are not kept); pending
# ones (attached, not yet sent) have no conversation.
ATTACHMENT_FIELDS = ("id", "conversation_id", "message_id", "name", "kind", "size", "pages", "text", "created_at")
FEEDBACK_FIELDS = ("id", "message_id", "rating", "comment", "created_at", "updated_at")
SHARE_LINK_FIELDS = ("id", "conversation_id", "token", "title", "message_ids", "created_at", "revoked_at")
PROMPT_FIELDS = ("id", "name", "title", "text", "published", "created_at", "updated_at")
COMPARISON_FIELDS = ("id", "first_id", "second_id", "blind", "chosen_id", "created_at", "picked_at")
# Named for the reader: the person's message both models answered, and the model of each reply and of the pick.
COMPARISON_NAMED = {
    "message_id": F("prompt_id"),
    "first_model": F("first__model_name"),
    "second_model": F("second__model_name"),
    "chosen_model": F("chosen__model_name"),
}


def _dumps(value) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False)


def _pages(queryset, fields: tuple[str, ...], named: dict | None = None) -> Iterator[list[dict]]:
    """Rows of ``queryset`` in id order (``fields`` start with ``id``; ``named``: more values under names of
    their own), one keyset page per query."""
    after = 0
    while True:
        rows = list(queryset.filter(pk__gt=after).order_by("pk").values(*fields, **(named or {}))[:PAGE])
        if rows:
            yield rows
        if len(rows) < PAGE:
            return
        after = rows[-1]["id"]


def _array_items(queryset, fields: tuple[str, ...], named: dict | None = None) -> Iterator[str]:
    """The rows as the items of a JSON array, one piece per page."""
    separator = ""
    for rows in _pages(queryset, fields, named):
        yield separator + ", ".join(_dumps(row) for row in rows)
        separator = ", "


def personal_data_chunks(*, user) -> Iterator[str]:
    """The JSON document for ``user``, as pieces of text that concatenate to it."""
    account = Account.objects.filter(user_id=user.pk).values("created_at", "approved_at").first()
    head = {
        "format": FORMAT,
        "exported_at": timezone.now(),
        "user": {
            "id": user.pk,
            "username": user.get_username(),
            "email": user.email,
            "date_joined": user.date_joined,
            "last_login": user.last_login,
        },
        "account": account,
    }
    yield _dumps(head)[:-1] + ', "conversations": ['
    separator = ""
    for conversations in _pages(Conversation.objects.filter(owner_id=user.pk), CONVERSATION_FIELDS):
        for conversation in conversations:
            yield separator + _dumps(conversation)[:-1] + ', "messages": ['
            separator = ", "
            yield from _array_items(Message.objects.filter(conversation_id=conversation["id"]), MESSAGE_FIELDS)
            yield "]}"
    yield '], "attachments": ['
    yield from _array_items(Attachment.objects.filter(owner_id=user.pk), ATTACHMENT_FIELDS)
    yield '], "feedback": ['
    yield from _array_items(Feedback.objects.filter(user_id=user.pk), FEEDBACK_FIELDS)
    yield '], "comparisons": ['
    yield from _array_items(
        Comparison.objects.filter(prompt__conversation__owner_id=user.pk), COMPARISON_FIELDS, COMPARISON_NAMED
    )
    yield '], "share_links": ['
    yield from _array_items(ShareLink.objects.filter(owner_id=user.pk), SHARE_LINK_FIELDS)
    yield '], "prompts": ['
    yield from _array_items(Prompt.objects.filter(owner_id=user.pk), PROMPT_FIELDS)
    yield '], "folders": ['
    yield from _array_items(Folder.objects.filter(owner_id=user.pk), FOLDER_FIELDS)
    yield "]}\n"


async def personal_data_stream(*, user) -> AsyncIterator[bytes]:
    """The same pieces for an ASGI response (Daphne): each is read in the request's database thread, so the
    event loop never waits on a query and the whole document is never held in memory (Django would buffer a
    synchronous iterator whole to serve it asynchronously)."""
    chunks = personal_data_chunks(user=user)
    step = sync_to_async(lambda: next(chunks, None), thread_sensitive=True)
    while (piece := await step()) is not None:
        yield piece.encode()
