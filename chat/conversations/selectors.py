"""Reads of a person's chats: their conversations, one conversation's shown branch, the sidebar's pages, folders
and search, the export, their defaults. Every lookup on behalf of a person is scoped to them: another's rows are
simply not found.
"""

from __future__ import annotations

from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    Value,
)
from django.db.models.functions import Coalesce, NullIf
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from chat.documents.selectors import attachments_by_message
from chat.errors import ChatError, ErrorCode
from chat.events import comparison_payload
from chat.models import ChatDefaults, Comparison, Conversation, Feedback, Folder, Message
from chat.tree import siblings_in, thread_rows

NOT_FOUND = gettext_lazy("No such conversation, or it is not yours.")
# The model a person is shown for a reply: the one that wrote it, or in an A/B experiment's candidate arm the
# control's (the review panel shows the real one).
SHOWN_MODEL = Coalesce(NullIf("shown_model_name", Value("")), F("model_name"))


def conversation_list_for_user(*, user):
    """The user's conversations, newest activity first."""
    return Conversation.objects.filter(owner=user).order_by("-updated_at", "-id")


def conversation_get_for_user(*, user, conversation_id) -> Conversation:
    """One of the user's conversations, or ``ChatError('not_found')``."""
    try:
        return Conversation.objects.get(pk=int(conversation_id), owner=user)
    except (Conversation.DoesNotExist, TypeError, ValueError, OverflowError):
        raise ChatError(ErrorCode.NOT_FOUND, NOT_FOUND) from None


def message_get_for_user(*, user, message_id) -> Message:
    """One message in one of the user's conversations, or ``ChatError('not_found')``."""
    try:
        return Message.objects.select_related("conversation").get(pk=int(message_id), conversation__owner=user)
    except (Message.DoesNotExist, TypeError, ValueError, OverflowError):
        raise ChatError(ErrorCode.NOT_FOUND, _("No such message, or it is not yours.")) from None


def messages_current(*, conversation) -> list[Message]:
    """The branch the user sees, oldest first."""
    return list(conversation.messages.filter(is_current=True).order_by("id"))


def thread_for_user(*, user, conversation: Conversation) -> list[dict]:
    """The shown branch as the page needs it: each message with its alternatives (ids, oldest first), its
    stored error, and for replies this person's rating, the params used and the model; for a message answered by
    Compare, the comparison (and both its replies); a person's message's attachments, a reply's sources. Four
    queries whatever the length, two more where a message has several replies."""
    rows = thread_rows(conversation_id=conversation.pk)
    messages = messages_current(conversation=conversation)
    ratings = {
        f.message_id: {"rating": f.rating, "comment": f.comment}
        for f in Feedback.objects.filter(message__in=[m.pk for m in messages], user=user)
    }
    # A comparison's message has two replies or more; only then is there one to read (a query fewer for most).
    answers: dict[int, int] = {}
    for row in rows.values():
        if row["role"] == Message.Role.ASSISTANT:
            answers[row["parent_id"]] = answers.get(row["parent_id"], 0) + 1
    asked = [m.pk for m in messages if m.role == Message.Role.USER and answers.get(m.pk, 0) > 1]
    comparisons = (
        {c.prompt_id: comparison_payload(c) for c in Comparison.objects.filter(prompt__in=asked)} if asked else {}
    )
    if comparisons:  # both replies of each, side by side on the page (one is off the shown branch)
        both = [i for c in comparisons.values() for i in (c["first"], c["second"])]
        replies = {
            r["id"]: r
            for r in Message.objects.filter(pk__in=both).values(
                "id",
                "content",
                "status",
                "completion_tokens",
                model=SHOWN_MODEL,
            )
        }
        for c in comparisons.values():
            c["replies"] = [replies[c["first"]], replies[c["second"]]]
    attached = attachments_by_message(message_ids=[m.pk for m in messages if m.role == Message.Role.USER])
    return [
        {
            "id": m.id,
            "conversation": m.conversation_id,
            "role": m.role,
            "content": m.content,
            "status": m.status,
            "siblings": siblings_in(rows, m.id),
            "error": m.error,
            "feedback": ratings.get(m.id),
            "params": m.params,
            "completion_tokens": m.completion_tokens,
            "model": (m.shown_model_name or m.model_name) if m.role == Message.Role.ASSISTANT else "",
            "comparison": comparisons.get(m.id),
            # What the page's info popover and timestamps show, as the done frame carries them: kept after a reload.
            "created_at": m.created_at.isoformat(),
            "finish_reason": m.finish_reason,
            "usage": {"prompt_tokens": m.prompt_tokens or 0, "completion_tokens": m.completion_tokens or 0},
            "timing": {"ttft_ms": m.ttft_ms, "tokens_per_s": m.tokens_per_s},
            "attachments": attached.get(m.id, []),
            "sources": m.sources or [],
        }
        for m in messages
    ]


def chat_defaults_for(*, user) -> dict:
    """The person's own settings for new conversations: ``{"system_prompt", "params", "model_name"}`` (empty when
    unset)."""
    row = ChatDefaults.objects.filter(user=user).values("system_prompt", "params", "model_name").first()
    return row or {"system_prompt": "", "params": {}, "model_name": ""}


def messages_active_in_conversation(*, conversation_id: int) -> list[Message]:
    """The assistant replies being generated in a conversation, oldest first (Compare writes two at once)."""
    return list(
        Message.objects.filter(conversation_id=conversation_id, status__in=Message.ACTIVE_STATUSES).order_by("id")[:2]
    )


def message_active_in_conversation(*, conversation_id: int) -> Message | None:
    """The assistant reply being generated in a conversation, if any."""
    return (
        Message.objects.filter(conversation_id=conversation_id, status__in=Message.ACTIVE_STATUSES)
        .order_by("-id")
        .first()
    )


def message_last_current(*, conversation) -> Message | None:
    """The newest message on the shown branch (a new message follows it)."""
    return conversation.messages.filter(is_current=True).order_by("-id").first()


SIDEBAR_PAGE = 30


SNIPPET_CHARS = 120


def conversation_page_for_user(
    *,
    user,
    query: str = "",
    after: tuple | None = None,
    limit: int = SIDEBAR_PAGE,
    folder: int | None = None,
    archived: bool = False,
    with_api: bool = False,
) -> tuple[list[dict], tuple | None]:
    """One page of the person's conversations, pinned first, then newest activity first, after the cursor
    ``(pinned, updated_at, id)`` of the previous page's last row (keyset paging: a page costs the same however
    far down it is, and rows that move to the top meanwhile are not shown twice).

    Which rows: by default the plain list — not archived, and either outside any folder or pinned (a pinned chat
    stays on top wherever it is filed); ``folder``: that folder's (the person's; another's finds nothing);
    ``archived``: only the archived. Conversations the OpenAI-compatible API made are left out unless
    ``with_api``. With ``query``: every conversation of the person (archived and filed ones too, so search
    loses nothing) whose title or any message contains it (case-insensitive), each with a snippet of the first
    matching message. Returns the rows and the next cursor (None at the end). Two queries."""
    rows = conversation_list_for_user(user=user).order_by("-pinned", "-updated_at", "-id")
    if not with_api:
        rows = rows.exclude(source=Conversation.Source.API)
    words = query.strip()
    if words:
        rows = rows.filter(
            Q(title__icontains=words)
            | Exists(Message.objects.filter(conversation=OuterRef("pk"), content__icontains=words))
        )
    elif archived:
        rows = rows.filter(archived_at__isnull=False)
    elif folder is not None:
        rows = rows.filter(folder_id=folder, archived_at__isnull=True)
    else:
        rows = rows.filter(Q(folder__isnull=True) | Q(pinned=True), archived_at__isnull=True)
    if after is not None:
        pinned, stamp, last_id = after
        rows = rows.filter(
            Q(pinned__lt=pinned)
            | Q(pinned=pinned, updated_at__lt=stamp)
            | Q(pinned=pinned, updated_at=stamp, id__lt=last_id)
        )
    page = list(rows.values("id", "title", "updated_at", "pinned", "source", "folder_id", "archived_at")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    for r in page:
        r["folder"] = r.pop("folder_id")
        r["archived"] = r.pop("archived_at") is not None
    if words and page:
        found: dict[int, str] = {}
        for m in (
            Message.objects.filter(conversation_id__in=[r["id"] for r in page], content__icontains=words)
            .order_by("conversation_id", "id")
            .values("conversation_id", "content")
        ):
            found.setdefault(m["conversation_id"], _snippet(m["content"], words))
        for r in page:
            r["snippet"] = found.get(r["id"], "")
    next_cursor = (page[-1]["pinned"], page[-1]["updated_at"], page[-1]["id"]) if more else None
    return page, next_cursor


def folders_for_user(*, user) -> list[dict]:
    """The person's folders by name, each with how many of its conversations are not archived. One query."""
    return list(
        Folder.objects.filter(owner=user)
        .annotate(count=Count("conversations", filter=Q(conversations__archived_at__isnull=True)))
        .order_by("name", "id")
        .values("id", "name", "count")
    )


def _snippet(text: str, words: str) -> str:
    """The words around the first match, on one line."""
    at = text.lower().find(words.lower())
    start = max(0, at - SNIPPET_CHARS // 3)
    piece = " ".join(text[start : start + SNIPPET_CHARS].split())
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(text) else "")


def conversation_tree_for_export(*, user, conversation_id) -> tuple[Conversation, list[Message]]:
    """A conversation of the person's and every message of every branch, oldest first (the JSON export)."""
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    return conversation, list(conversation.messages.order_by("id"))


def conversation_for_export(*, user, conversation_id) -> tuple[Conversation, list[Message]]:
    """A conversation of the person's and its shown branch, oldest first (what the page shows is exported)."""
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    return conversation, messages_current(conversation=conversation)
