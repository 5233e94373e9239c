"""The review panel's reads. Every per-row figure is a correlated subquery, so a list page is one query
whatever its length; lists of ids of any length are bound a chunk at a time (``id_chunks``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce

from chat.models import Attachment, Comparison, Conversation, Feedback, Message
from chat.replies.liveness import ReplyProgress, replies_progress

# Ids bound per statement where a caller's list of ids can be any length (the review panel's "select all"):
# SQLite binds at most 32,766 parameters in one statement, and PostgreSQL plans huge IN lists badly.
ID_CHUNK = 500


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
        yield ids[start : start + size]


def message_counts(*, conversation_ids: Iterable[int]) -> dict[int, int]:
    """How many messages each of these conversations holds: one grouped query per ``ID_CHUNK`` of them."""
    counts = {}
    for ids in id_chunks(conversation_ids):
        counts.update(
            Message.objects.filter(conversation_id__in=ids)
            .order_by()
            .values_list("conversation_id")
            .annotate(n=Count("pk"))
        )
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
    return (
        conversations_for_review()
        .filter(review_state=Conversation.ReviewState.UNREVIEWED)
        .order_by(*QUEUE_ORDER, "-pk")
    )


def model_names() -> list[str]:
    """Every model a reply may name: the conversations' models and the ones served now (a Compare reply's model
    is a served one; reading the message table's distinct names would cost a scan of every message)."""
    names = set(Conversation.objects.order_by().values_list("model_name", flat=True).distinct())
    return sorted((names | {m.name for m in settings.CHAT_SERVED_MODELS}) - {""})


def comparisons_for_review() -> QuerySet:
    """Every Compare with its conversation, owner's name, each reply's model and the picked one's, and whether
    it is picked: joined names, never a reply's text."""
    return Comparison.objects.annotate(
        conversation_id=F("prompt__conversation_id"),
        owner_name=F("prompt__conversation__owner__username"),
        first_model=F("first__model_name"),
        second_model=F("second__model_name"),
        chosen_model=F("chosen__model_name"),
        picked=Q(chosen__isnull=False),
    )


def messages_for_review() -> QuerySet:
    """Every message with its conversation, owner and 👍/👎 counts."""
    return Message.objects.select_related("conversation__owner").annotate(
        thumbs_up=_count(Feedback.objects.filter(rating=1), "message"),
        thumbs_down=_count(Feedback.objects.filter(rating=-1), "message"),
    )


def replies_live() -> QuerySet:
    """Replies queued or streaming right now, longest waiting first, with their conversation and its owner."""
    return (
        Message.objects.filter(role=Message.Role.ASSISTANT, status__in=Message.ACTIVE_STATUSES)
        .select_related("conversation__owner")
        .order_by("created_at", "id")
    )


def replies_all() -> QuerySet:
    """Every assistant reply, whatever its state (the live page looks up rows that ended since it was drawn)."""
    return Message.objects.filter(role=Message.Role.ASSISTANT)


def replies_live_progress(*, message_ids: list[int]) -> dict[int, ReplyProgress]:
    """The worker holding each of these replies and its tokens so far, from Redis in one round trip for the
    whole page. Redis unreachable: nothing is known (the page says "—" rather than failing)."""
    from redis.exceptions import RedisError

    try:
        return replies_progress(list(message_ids))
    except RedisError:
        return {}


@dataclass(frozen=True)
class CompareMark:
    """What the transcript page says of a message in a Compare: on the user message, its two replies; on a
    reply, the other one (``other``; None on the user message). ``picked``: the person's pick (None: not picked
    yet); ``blind``: the names were hidden until the pick."""

    first: int
    second: int
    picked: int | None
    blind: bool
    other: int | None = None


def _compare_mark(message: Message) -> CompareMark | None:
    """The Compare a message is in, from the rows ``transcript_page`` joined (no query of its own)."""
    asked = message if message.role == Message.Role.USER else message.parent
    comparison = getattr(asked, "comparison", None) if asked is not None else None
    if comparison is None:
        return None
    first, second = comparison.first_id, comparison.second_id
    other = None
    if message.role == Message.Role.ASSISTANT:
        if message.pk not in (first, second):
            return None  # a regenerated sibling of the two, not one of them
        other = second if message.pk == first else first
    return CompareMark(first, second, comparison.chosen_id, comparison.blind, other)


def transcript_page(*, conversation: Conversation, page=1, per_page: int | None = None) -> Page:
    """One page of a whole transcript in the order it was written: every branch, alternatives included, each
    message with its feedback (and who gave it), its attached documents, its gold answer, and its Compare
    (``compare``: a ``CompareMark`` or None). A fixed number of queries per page: the comparisons come joined to
    the messages they hang on (a reply's through its parent, whose text is left unread)."""
    messages = (
        Message.objects.filter(conversation=conversation)
        .select_related("gold_answer__author", "comparison", "parent__comparison")
        .defer("parent__content", "parent__params", "parent__error")
        .prefetch_related(
            Prefetch("feedback", queryset=Feedback.objects.select_related("user").order_by("id")),
            Prefetch("attachments", queryset=Attachment.objects.order_by("id")),  # documents sent with it
        )
        .order_by("id")
    )
    shown = Paginator(messages, per_page or TRANSCRIPT_PAGE).get_page(page)
    for message in shown:  # the page's one list of rows (Page reads its slice once)
        message.compare = _compare_mark(message)
    return shown
