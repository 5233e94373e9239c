"""The import's one write: a file's conversations stored for the person who uploaded it, every one or none (one
transaction), within ``CHAT_IMPORTED_MESSAGES_PER_PERSON``. The file is read by ``imports.parse`` first, so a
refused file stores nothing (docs/api.md, "Importing conversations")."""

from __future__ import annotations

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.conversations import imports
from chat.errors import ErrorCode
from chat.models import Conversation, Message, lock_person
from chat.text import title_from


def conversations_import(*, user, data: bytes) -> list[int]:
    """Store the file's conversations as the person's, marked ``source=import``, with every branch; returns their
    ids in the file's order. Assistant turns are ``supplied`` (written elsewhere, never a training target) and no
    token is charged: nothing is generated."""
    plans = [p for p in imports.parse(data) if p.turns]
    if not plans:
        raise imports.refuse(ErrorCode.IMPORT_INVALID, _("The file's conversations hold no messages to import."))
    count = sum(len(p.turns) for p in plans)
    now = timezone.now()
    with transaction.atomic():
        # The person's row locked: two uploads at once cannot both pass the bound.
        lock_person(user.pk)
        held = Message.objects.filter(conversation__owner=user, conversation__source=Conversation.Source.IMPORT).count()
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
    return [c.pk for c in conversations]


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
