"""Reads. Every lookup on behalf of a user is scoped to that user: another's rows are simply not found."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from chat.errors import ChatError
from chat.liveness import ReplyProgress, replies_progress
from chat.models import Account, ChatDefaults, Conversation, Feedback, Invite, Message

NOT_FOUND = "No such conversation, or it is not yours."
# Ids bound per statement where a caller's list of ids can be any length (the review panel's "select all"):
# SQLite binds at most 32,766 parameters in one statement, and PostgreSQL plans huge IN lists badly.
ID_CHUNK = 500


def conversation_list_for_user(*, user):
    """The user's conversations, newest activity first."""
    return Conversation.objects.filter(owner=user).order_by("-updated_at", "-id")


def conversation_get_for_user(*, user, conversation_id) -> Conversation:
    """One of the user's conversations, or ``ChatError('not_found')``."""
    try:
        return Conversation.objects.get(pk=int(conversation_id), owner=user)
    except (Conversation.DoesNotExist, TypeError, ValueError, OverflowError):
        raise ChatError("not_found", NOT_FOUND) from None


def message_get_for_user(*, user, message_id) -> Message:
    """One message in one of the user's conversations, or ``ChatError('not_found')``."""
    try:
        return Message.objects.select_related("conversation").get(pk=int(message_id), conversation__owner=user)
    except (Message.DoesNotExist, TypeError, ValueError, OverflowError):
        raise ChatError("not_found", "No such message, or it is not yours.") from None


def messages_current(*, conversation) -> list[Message]:
    """The branch the user sees, oldest first."""
    return list(conversation.messages.filter(is_current=True).order_by("id"))


def thread_rows(*, conversation_id: int) -> dict[int, dict]:
    """Every message of a conversation as ``{id: {id, parent_id, role, is_current}}``: the tree, in one query."""
    return {row["id"]: row for row in Message.objects.filter(conversation_id=conversation_id)
            .values("id", "parent_id", "role", "is_current")}


def siblings_in(rows: dict[int, dict], message_id: int) -> list[int]:
    """The alternatives of a message (itself included), oldest first: messages with its parent and its role."""
    me = rows[message_id]
    return sorted(i for i, r in rows.items() if r["parent_id"] == me["parent_id"] and r["role"] == me["role"])


def current_below(rows: dict[int, dict], message_id: int) -> list[int]:
    """A message and the shown messages below it: what leaves the screen when it is replaced."""
    children: dict[int | None, list[int]] = {}
    for i, r in rows.items():
        if r["is_current"]:
            children.setdefault(r["parent_id"], []).append(i)
    out, todo = [], [message_id]
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(children.get(node, ()))
    return out


def newest_path_from(rows: dict[int, dict], message_id: int) -> list[int]:
    """A message and, below it, the newest child at each level: the branch shown after switching to it."""
    children: dict[int | None, list[int]] = {}
    for i, r in rows.items():
        children.setdefault(r["parent_id"], []).append(i)
    path = [message_id]
    while children.get(path[-1]):
        path.append(max(children[path[-1]]))
    return path


def thread_for_user(*, user, conversation: Conversation) -> list[dict]:
    """The shown branch as the page needs it: each message with its alternatives (ids, oldest first), its
    stored error, and for replies this person's rating and the params used. Three queries whatever the length."""
    rows = thread_rows(conversation_id=conversation.pk)
    messages = messages_current(conversation=conversation)
    ratings = {f.message_id: {"rating": f.rating, "comment": f.comment}
               for f in Feedback.objects.filter(message__in=[m.pk for m in messages], user=user)}
    return [{"id": m.id, "conversation": m.conversation_id, "role": m.role, "content": m.content,
             "status": m.status, "siblings": siblings_in(rows, m.id), "error": m.error,
             "feedback": ratings.get(m.id), "params": m.params, "completion_tokens": m.completion_tokens}
            for m in messages]


def chat_defaults_for(*, user) -> dict:
    """The person's own settings for new conversations: ``{"system_prompt", "params"}`` (empty when unset)."""
    row = ChatDefaults.objects.filter(user=user).values("system_prompt", "params").first()
    return row or {"system_prompt": "", "params": {}}


def message_active_in_conversation(*, conversation_id: int) -> Message | None:
    """The assistant reply being generated in a conversation, if any."""
    return (Message.objects.filter(conversation_id=conversation_id, status__in=Message.ACTIVE_STATUSES)
            .order_by("-id").first())


def message_last_current(*, conversation) -> Message | None:
    """The newest message on the shown branch (a new message follows it)."""
    return conversation.messages.filter(is_current=True).order_by("-id").first()


def history_for_prompt(*, message: Message) -> list[dict]:
    """The turns an assistant message answers: its ancestors, oldest first, plus the system prompt.

    One query for the whole conversation, then a walk up the parent links, so branches never mix.
    """
    rows = {m["id"]: m for m in Message.objects.filter(conversation_id=message.conversation_id)
            .values("id", "parent_id", "role", "content", "status")}
    return prompt_turns(rows=rows, parent_id=message.parent_id, system_prompt=message.conversation.system_prompt)


def prompt_turns(*, rows: dict[int, dict], parent_id: int | None, system_prompt: str) -> list[dict]:
    """The prompt of a reply whose parent is ``parent_id``, from its conversation's rows by id (each with
    ``parent_id``, ``role``, ``content``, ``status``): the walk up the parent links, oldest first, leaving out
    failed and empty turns as the model never saw them; the system prompt first when set. The dataset export
    walks the same way, so a preference pair's prompt is the one its reply answered."""
    chain = []
    node = rows.get(parent_id)
    while node is not None:
        if node["content"] and node["status"] != Message.Status.FAILED:
            chain.append({"role": node["role"], "content": node["content"]})
        node = rows.get(node["parent_id"])
    chain.reverse()
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + chain


def message_for_delivery(*, message_id: int) -> Message | None:
    """A reply as a socket's watchdog needs it (status, text, counts); None when it is gone."""
    return Message.objects.filter(pk=message_id).first()


def message_ids_streaming_since(*, before, limit: int) -> list[int]:
    """Replies streaming since before ``before``: candidates for the sweep's lease check."""
    return list(Message.objects.filter(status=Message.Status.STREAMING, started_at__lt=before)
                .values_list("id", flat=True)[:limit])


def message_ids_queued_since(*, before, limit: int) -> list[int]:
    """Replies still queued since before ``before``: nobody took them in time."""
    return list(Message.objects.filter(status=Message.Status.QUEUED, created_at__lt=before)
                .values_list("id", flat=True)[:limit])


def replies_active_by_status() -> dict[str, int]:
    """Replies queued or streaming now, per status (both present, 0 when none): one indexed count."""
    counts = dict(Message.objects.filter(status__in=Message.ACTIVE_STATUSES).order_by().values("status")
                  .annotate(n=Count("id")).values_list("status", "n"))
    return {str(status): counts.get(status, 0) for status in Message.ACTIVE_STATUSES}


def replies_active_for_user(*, user_id: int) -> int:
    """How many replies of this person are queued or streaming, over all their conversations."""
    return Message.objects.filter(conversation__owner_id=user_id, status__in=Message.ACTIVE_STATUSES).count()


# --- Accounts: who may chat, which invite a sign-up link is.
NOT_APPROVED = ("Your account is waiting for approval by the site's staff: you can look around, but you cannot "
                "send messages until they approve it.")


def account_may_chat(*, user) -> bool:
    """Whether this person may send messages: staff always; others unless their account awaits approval (a
    user without an Account row was made by staff and counts as approved)."""
    if user.is_staff or user.is_superuser:
        return True
    return not Account.objects.filter(user_id=user.pk, approved_at__isnull=True).exists()


def invite_for_signup(*, token) -> Invite:
    """The invite a sign-up link carries, or ``ChatError`` saying why it cannot be used."""
    invite = Invite.objects.filter(token=token).first() if isinstance(token, str) and token else None
    if invite is None:
        raise ChatError("invite_unknown", "This invite link is not valid: check that you copied all of it, or "
                                          "ask the person who sent it for a new one.")
    if invite.used_at is not None:
        raise ChatError("invite_used", "This invite link has already been used; each link signs up one person. "
                                       "Ask for a new one.")
    if invite.expires_at <= timezone.now():
        raise ChatError("invite_expired", f"This invite link expired on {invite.expires_at:%Y-%m-%d %H:%M} UTC; "
                                          "ask for a new one.")
    return invite



# --- The review panel's reads. Every per-row figure is a correlated subquery, so a list page is one query
# whatever its length (joins with GROUP BY would multiply one another's counts and grow with the table).

TRANSCRIPT_PAGE = 200  # messages on one page of a transcript in the admin
PROBLEM_STATUSES = (Message.Status.FAILED, Message.Status.STOPPED)
QUEUE_ORDER = ("-has_negative", "-has_problem", "-updated_at")


def id_chunks(ids: Iterable[int] | QuerySet, *, size: int | None = None) -> Iterator[list[int]]:
    """``ids``, distinct and ascending, ``size`` (``ID_CHUNK``) at a time. A queryset is walked by primary key,
    one query per chunk (keyset pagination: a late chunk costs what the first does, and the table's ids are
    never all in memory at once); any other iterable, a caller's list, is sorted in memory."""
    size = size or ID_CHUNK
    if isinstance(ids, QuerySet):
        pks = ids.order_by("pk").values_list("pk", flat=True)
        last = None
        while True:
            chunk = list((pks if last is None else pks.filter(pk__gt=last))[:size])
            if chunk:
                yield chunk
            if len(chunk) < size:
                return
            last = chunk[-1]
    ids = sorted({int(pk) for pk in ids})
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def message_counts(*, conversation_ids: Iterable[int]) -> dict[int, int]:
    """How many messages each of these conversations holds: one grouped query per ``ID_CHUNK`` of them."""
    counts = {}
    for ids in id_chunks(conversation_ids):
        counts.update(Message.objects.filter(conversation_id__in=ids).order_by()
                      .values_list("conversation_id").annotate(n=Count("pk")))
    return counts


def _count(queryset: QuerySet, key: str):
    """The number of ``queryset`` rows whose ``key`` is the outer row, as an annotation (0, not NULL)."""
    counted = queryset.filter(**{key: OuterRef("pk")}).order_by().values(key).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def conversations_for_review() -> QuerySet:
    """Every conversation with its owner, message count, 👍/👎 counts and whether it has negative feedback or
    a failed or stopped reply."""
    return Conversation.objects.select_related("owner", "reviewed_by").annotate(
        message_count=_count(Message.objects.all(), "conversation"),
        thumbs_up=_count(Feedback.objects.filter(rating=1), "message__conversation"),
        thumbs_down=_count(Feedback.objects.filter(rating=-1), "message__conversation"),
        has_negative=Exists(Feedback.objects.filter(message__conversation=OuterRef("pk"), rating=-1)),
        has_problem=Exists(Message.objects.filter(conversation=OuterRef("pk"), status__in=PROBLEM_STATUSES)),
    )


def review_queue() -> QuerySet:
    """Unreviewed conversations: negative feedback first, then failed or stopped replies, then the rest;
    newest activity first within each."""
    return (conversations_for_review().filter(review_state=Conversation.ReviewState.UNREVIEWED)
            .order_by(*QUEUE_ORDER, "-pk"))


def model_names() -> list[str]:
    """Every model a reply may name: the conversations' models and the site's current one."""
    names = set(Conversation.objects.order_by().values_list("model_name", flat=True).distinct())
    return sorted((names | {settings.CHAT_MODEL}) - {""})


def messages_for_review() -> QuerySet:
    """Every message with its conversation, owner and 👍/👎 counts."""
    return Message.objects.select_related("conversation__owner").annotate(
        thumbs_up=_count(Feedback.objects.filter(rating=1), "message"),
        thumbs_down=_count(Feedback.objects.filter(rating=-1), "message"),
    )


def generations_live() -> QuerySet:
    """Replies queued or streaming right now, longest waiting first, with their conversation and its owner."""
    return (Message.objects.filter(role=Message.Role.ASSISTANT, status__in=Message.ACTIVE_STATUSES)
            .select_related("conversation__owner").order_by("created_at", "id"))


def replies_all() -> QuerySet:
    """Every assistant reply, whatever its state (the live page looks up rows that ended since it was drawn)."""
    return Message.objects.filter(role=Message.Role.ASSISTANT)


def generations_progress(*, message_ids: list[int]) -> dict[int, ReplyProgress]:
    """The worker holding each of these replies and its tokens so far, from Redis in one round trip for the
    whole page. Redis unreachable: nothing is known (the page says "—" rather than failing)."""
    from redis.exceptions import RedisError

    try:
        return replies_progress(list(message_ids))
    except RedisError:
        return {}


def transcript_page(*, conversation: Conversation, page=1, per_page: int | None = None) -> Page:
    """One page of a whole transcript in the order it was written: every branch, alternatives included, each
    message with its feedback (and who gave it) and its gold answer. A fixed number of queries per page."""
    messages = (Message.objects.filter(conversation=conversation).select_related("gold_answer__author")
                .prefetch_related(Prefetch("feedback", queryset=Feedback.objects.select_related("user")
                                           .order_by("id")))
                .order_by("id"))
    return Paginator(messages, per_page or TRANSCRIPT_PAGE).get_page(page)


# --- The chat page's sidebar: newest first, paged by a cursor, optionally searched.

SIDEBAR_PAGE = 30
SNIPPET_CHARS = 120


def conversation_page_for_user(*, user, query: str = "", after: tuple | None = None,
                               limit: int = SIDEBAR_PAGE) -> tuple[list[dict], tuple | None]:
    """One page of the person's conversations, newest activity first, after the cursor ``(updated_at, id)``
    of the previous page's last row (keyset paging: a page costs the same however far down it is, and rows
    that move to the top meanwhile are not shown twice). With ``query``: only those whose title or any
    message contains it (case-insensitive), each with a snippet of the first matching message. Returns the
    rows and the next cursor (None at the end). Two queries."""
    rows = conversation_list_for_user(user=user)
    words = query.strip()
    if words:
        rows = rows.filter(Q(title__icontains=words) | Exists(
            Message.objects.filter(conversation=OuterRef("pk"), content__icontains=words)))
    if after is not None:
        stamp, last_id = after
        rows = rows.filter(Q(updated_at__lt=stamp) | Q(updated_at=stamp, id__lt=last_id))
    page = list(rows.values("id", "title", "updated_at")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    if words and page:
        found: dict[int, str] = {}
        for m in (Message.objects.filter(conversation_id__in=[r["id"] for r in page], content__icontains=words)
                  .order_by("conversation_id", "id").values("conversation_id", "content")):
            found.setdefault(m["conversation_id"], _snippet(m["content"], words))
        for r in page:
            r["snippet"] = found.get(r["id"], "")
    next_cursor = (page[-1]["updated_at"], page[-1]["id"]) if more else None
    return page, next_cursor


def _snippet(text: str, words: str) -> str:
    """The words around the first match, on one line."""
    at = text.lower().find(words.lower())
    start = max(0, at - SNIPPET_CHARS // 3)
    piece = " ".join(text[start:start + SNIPPET_CHARS].split())
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(text) else "")


def conversation_for_export(*, user, conversation_id) -> tuple[Conversation, list[Message]]:
    """A conversation of the person's and its shown branch, oldest first (what the page shows is exported)."""
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    return conversation, messages_current(conversation=conversation)


def api_keys_for_user(*, user) -> list:
    """A person's API keys, newest first (the hash stays out of the page's reach)."""
    from chat.models import ApiKey

    return list(ApiKey.objects.filter(owner=user).defer("secret_hash").order_by("-created_at", "-id"))
