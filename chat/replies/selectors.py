"""Reads about replies: the history a reply's prompt is built from, a reply for delivery, the replies the sweep
looks at, and how many are active (per person, per status).
"""

from __future__ import annotations

from django.db.models import Count, Func, IntegerField, Q, Sum
from django.db.models.functions import Coalesce

from chat.models import Message


def history_for_prompt(*, message: Message) -> list[dict]:
    """The turns an assistant message answers: its ancestors, oldest first, plus the system prompt.

    One query for the whole conversation, then a walk up the parent links, so branches never mix.
    """
    rows = {
        m["id"]: m
        for m in Message.objects.filter(conversation_id=message.conversation_id).values(
            "id", "parent_id", "role", "content", "status"
        )
    }
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


class Utf8Bytes(Func):
    """A text's length in UTF-8 bytes: PostgreSQL's (and MySQL's) ``OCTET_LENGTH``; SQLite counts the text cast
    to a blob."""

    function = "OCTET_LENGTH"
    output_field = IntegerField()

    def as_sqlite(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, template="LENGTH(CAST(%(expressions)s AS BLOB))", **extra)


def conversation_text_size(*, conversation_id: int) -> tuple[int, int]:
    """The UTF-8 bytes of every message of a conversation, every branch, and how many messages: more than any
    prompt made from it can hold (admission's bound of a reply's cost). One aggregate query."""
    row = Message.objects.filter(conversation_id=conversation_id).aggregate(
        size=Coalesce(Sum(Utf8Bytes("content")), 0), messages=Count("id")
    )
    return int(row["size"]), int(row["messages"])


def reply_for_delivery(*, message_id: int) -> Message | None:
    """A reply as a socket's watchdog needs it (status, text, counts); None when it is gone."""
    return Message.objects.filter(pk=message_id).first()


def reply_ids_streaming_since(*, before, limit: int) -> list[int]:
    """Replies streaming since before ``before``: candidates for the sweep's lease check."""
    return list(
        Message.objects.filter(status=Message.Status.STREAMING, started_at__lt=before).values_list("id", flat=True)[
            :limit
        ]
    )


def reply_ids_queued_since(*, before, limit: int) -> list[int]:
    """Replies still queued since before ``before``: nobody took them in time. Queued since their creation, or
    for a continued reply (chat/conversations/continuation.py) since ``started_at``, which Continue sets to when
    it queued the reply again (a worker's claim sets it anew)."""
    queued_before = Q(started_at__isnull=True, created_at__lt=before) | Q(started_at__lt=before)
    return list(
        Message.objects.filter(queued_before, status=Message.Status.QUEUED).values_list("id", flat=True)[:limit]
    )


def replies_active_by_status() -> dict[str, int]:
    """Replies queued or streaming now, per status (both present, 0 when none): one indexed count."""
    counts = dict(
        Message.objects.filter(status__in=Message.ACTIVE_STATUSES)
        .order_by()
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {str(status): counts.get(status, 0) for status in Message.ACTIVE_STATUSES}


def replies_active_for_user(*, user_id: int) -> int:
    """How many replies of this person are queued or streaming, over all their conversations."""
    return Message.objects.filter(conversation__owner_id=user_id, status__in=Message.ACTIVE_STATUSES).count()
