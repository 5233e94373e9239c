"""The import's one write: a file's conversations stored for the person who uploaded it, every one or none (one
transaction), within ``CHAT_IMPORTED_MESSAGES_PER_PERSON`` messages and ``CHAT_IMPORTED_BYTES_PER_PERSON`` bytes of
text, at most ``CHAT_IMPORTS_PER_HOUR`` uploads an hour, by an approved person. The file is read by
``imports.parse`` first, so a refused file stores nothing (docs/api.md, "Importing conversations")."""

from __future__ import annotations

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from limits import RateLimitItemPerHour

from chat.conversations import imports
from chat.errors import ChatError, ErrorCode
from chat.limits import quotas
from chat.models import Conversation, Message, lock_person
from chat.replies import admission
from chat.replies.selectors import Utf8Bytes
from chat.text import title_from


def _imports_left(user_id: int) -> None:
    """A refusal when the person imported ``CHAT_IMPORTS_PER_HOUR`` files in the last hour: the bounds below bound
    what a person holds, but importing and deleting again and again would keep the database writing for nothing
    else. Only imports that stored something count (``_import_counted``): a file refused is no import, and
    retrying a broken export must not use up the hour."""
    n = settings.CHAT_IMPORTS_PER_HOUR
    if n <= 0:
        return
    wait = quotas.window_wait(RateLimitItemPerHour(n), "imports", str(user_id))
    if wait is None:
        return
    raise ChatError(
        ErrorCode.RATE_LIMITED,
        ngettext(
            "You have imported %(n)s file in the last hour, the most this site allows; try again in %(wait)s.",
            "You have imported %(n)s files in the last hour, the most this site allows; try again in %(wait)s.",
            n,
        )
        % {"n": n, "wait": quotas.in_words(wait)},
        retry_after=wait,
    )


def _import_counted(user_id: int) -> None:
    n = settings.CHAT_IMPORTS_PER_HOUR
    if n > 0:
        quotas.window_hit(RateLimitItemPerHour(n), "imports", str(user_id))


def conversations_import(*, user, data: bytes) -> list[int]:
    """Store the file's conversations as the person's, marked ``source=import``, with every branch; returns their
    ids in the file's order. Assistant turns are ``supplied`` (written elsewhere, never a training target) and no
    token is charged: nothing is generated."""
    admission.require_approved(user)  # an account awaiting approval stores nothing, as it sends nothing
    _imports_left(user.pk)
    plans = [p for p in imports.parse(data) if p.turns]
    if not plans:
        raise imports.refuse(ErrorCode.IMPORT_INVALID, _("The file's conversations hold no messages to import."))
    count = sum(len(p.turns) for p in plans)
    size = sum(len(t.content.encode()) for p in plans for t in p.turns)
    now = timezone.now()
    with transaction.atomic():
        # The person's row locked: two uploads at once cannot both pass the bounds.
        lock_person(user.pk)
        mine = Message.objects.filter(conversation__owner=user, conversation__source=Conversation.Source.IMPORT)
        row = mine.aggregate(n=Count("id"), size=Coalesce(Sum(Utf8Bytes("content")), 0))
        held, held_size = row["n"], row["size"]
        # The count alone let one account hold ~19 GB: 50,000 messages of 100,000 four-byte characters.
        if held_size + size > settings.CHAT_IMPORTED_BYTES_PER_PERSON:
            raise imports.refuse(
                ErrorCode.IMPORT_LIMIT,
                _(
                    "Imported conversations may hold %(max)s MB of text per person; you have %(held)s MB and the "
                    "file has %(n)s MB. Delete some imported conversations first. Nothing was imported."
                )
                % {
                    "max": _mb(settings.CHAT_IMPORTED_BYTES_PER_PERSON),
                    "held": _mb(held_size),
                    "n": _mb(size),
                },
            )
        if held + count > settings.CHAT_IMPORTED_MESSAGES_PER_PERSON:
            raise imports.refuse(
                ErrorCode.IMPORT_LIMIT,
                _(
                    "Imported conversations may hold %(max)d messages per person; you have %(held)d and the file "
                    "has %(n)d. Delete some imported conversations first. Nothing was imported."
                )
                % {"max": settings.CHAT_IMPORTED_MESSAGES_PER_PERSON, "held": held, "n": count},
            )
        conversations = []
        for plan in plans:
            first = next((t.content for t in plan.turns if t.role == Message.Role.USER), plan.turns[0].content)
            conversations.append(
                Conversation.objects.create(
                    owner=user,
                    title=plan.title or title_from(first),
                    system_prompt=plan.system_prompt,
                    source=Conversation.Source.IMPORT,
                )
            )
        _store_turns(plans, conversations, now)
        for plan, conversation in zip(plans, conversations, strict=True):
            times = [t.created_at for t in plan.turns if t.created_at]
            created = plan.created_at or (min(times) if times else now)
            updated = max([plan.updated_at or created, *times])
            # The sidebar dates it as it was, never in the future.
            Conversation.objects.filter(pk=conversation.pk).update(
                created_at=min(created, now), updated_at=min(updated, now)
            )
        transaction.on_commit(lambda: _import_counted(user.pk), robust=True)
    return [c.pk for c in conversations]


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}".removesuffix(".0")


def _store_turns(plans, conversations, now) -> None:
    """Every turn in two statements, whatever the trees' shapes: one bulk insert with no parents (ids come back in
    the order given: parents before children, alternatives oldest first, as they are numbered), then one prepared
    UPDATE run for every row, setting its parent and the file's time. Inserting a tree level by level instead
    took one statement per level, and Django's ``bulk_update`` builds a CASE per batch: 20,000 messages took
    seconds more either way. ``created_at`` is written by the UPDATE because ``auto_now_add`` sets it to now on
    insert."""
    rows, links = [], []
    for i, plan in enumerate(plans):
        for turn in plan.turns:  # parents first
            rows.append(
                Message(
                    conversation=conversations[i],
                    role=turn.role,
                    content=turn.content,
                    status=turn.status,
                    is_current=turn.current,
                    supplied=turn.role == Message.Role.ASSISTANT,
                )
            )
            links.append((i, turn))
    Message.objects.bulk_create(rows, batch_size=500)
    ids = {(i, turn.key): row.pk for (i, turn), row in zip(links, rows, strict=True)}
    ops = connection.ops
    table = connection.ops.quote_name(Message._meta.db_table)
    parent = ops.quote_name(Message._meta.get_field("parent").column)
    created = ops.quote_name(Message._meta.get_field("created_at").column)
    values = [
        (
            None if turn.parent is None else ids[(i, turn.parent)],
            ops.adapt_datetimefield_value(min(turn.created_at or now, now)),
            ids[(i, turn.key)],
        )
        for i, turn in links
    ]
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {table} SET {parent} = %s, {created} = %s WHERE id = %s", values)
