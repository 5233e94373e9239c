"""Writes of the review panel: review states, gold answers, deletions, cancelled generations, and the audit
trail they leave.

Every function here acts for a staff member (``actor``) on other people's transcripts, so each one writes an
``AuditEvent`` in the same transaction as its change: a change without its audit row cannot be committed.
Review writes use ``update()`` so the owner's ``updated_at`` (their last activity) is not touched. The bulk
writes take their ids ``selectors.ID_CHUNK`` at a time: "select all" on a big list picks more ids than one
statement may bind.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from chat.accounts import erasure
from chat.errors import ChatError, ErrorCode
from chat.models import AuditEvent, Conversation, GoldAnswer, Message
from chat.replies.services import StopOutcome, replies_end_for_deletion, reply_stop
from chat.review.dataset import KINDS
from chat.review.selectors import id_chunks, message_counts
from chat.text import clean_text

Action = AuditEvent.Action
REVIEW_PERMISSION = "chat.review_conversation"
NOTE_CHARS = 4000
EXPORT_AUDIT_BATCH = 1000  # audit rows per INSERT while recording an export


def can_review(user) -> bool:
    """Whether this user may open and review other people's transcripts: active staff with the permission, on a
    site whose chat page tells people their conversations may be reviewed (``CHAT_REVIEW_ENABLED``)."""
    return bool(settings.CHAT_REVIEW_ENABLED and user.is_active and user.is_staff and user.has_perm(REVIEW_PERMISSION))


def _require_reviewer(user) -> None:
    if not can_review(user):
        raise ChatError(ErrorCode.FORBIDDEN, gettext("Only reviewers may do this."))


def audit_record(
    *,
    actor,
    action: str,
    conversation_id: int | None = None,
    message_id: int | None = None,
    details: dict | None = None,
) -> AuditEvent:
    """Write one audit row for something a staff member did to a transcript."""
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username(),
        action=action,
        conversation_id=conversation_id,
        message_id=message_id,
        details=details or {},
    )


@transaction.atomic
def review_set(*, reviewer, conversation_ids: list[int], state: str, note: str | None = None) -> int:
    """Set the review state (and, when given, the note) of conversations; one audit row each. Returns how
    many conversations changed."""
    _require_reviewer(reviewer)
    if state not in Conversation.ReviewState.values:
        raise ChatError(ErrorCode.INVALID_STATE, gettext("A review state is unreviewed, approved or needs_attention."))
    fields = {"review_state": state, "reviewed_by": reviewer, "reviewed_at": timezone.now()}
    if note is not None:
        note = clean_text(note).strip()
        if len(note) > NOTE_CHARS:
            raise ChatError(
                ErrorCode.TOO_LONG,
                gettext("The note is too long: at most %(note_chars)s characters.") % {"note_chars": NOTE_CHARS},
            )
        fields["review_note"] = note
    details = {"state": state} if note is None else {"state": state, "note": note}
    changed = 0
    for ids in id_chunks(conversation_ids):
        rows = Conversation.objects.select_for_update().filter(pk__in=ids)
        previous = dict(rows.values_list("pk", "review_state"))
        Conversation.objects.filter(pk__in=list(previous)).update(**fields)
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(
                    actor=reviewer,
                    actor_name=reviewer.get_username(),
                    action=Action.REVIEW_CHANGED,
                    conversation_id=pk,
                    details={**details, "previous": old},
                )
                for pk, old in previous.items()
            ]
        )
        changed += len(previous)
    return changed


@transaction.atomic
def gold_answer_set(*, reviewer, message_id: int, content: str) -> GoldAnswer | None:
    """Attach a corrected answer to an assistant reply, replacing any earlier one; empty content removes it
    (returns None). Audited with the text before and after."""
    _require_reviewer(reviewer)
    try:
        message = Message.objects.get(pk=int(message_id))
    except (Message.DoesNotExist, TypeError, ValueError, OverflowError):
        raise ChatError(ErrorCode.NOT_FOUND, gettext("No such message.")) from None
    if message.role != Message.Role.ASSISTANT:
        raise ChatError(ErrorCode.NOT_AN_ANSWER, gettext("A gold answer belongs to an assistant reply."))
    text = clean_text(content).strip()
    old = GoldAnswer.objects.filter(message=message).first()
    audit_record(
        actor=reviewer,
        action=Action.GOLD_ANSWER_CHANGED,
        conversation_id=message.conversation_id,
        message_id=message.pk,
        details={"previous": old.content if old else None, "content": text},
    )
    if not text:
        if old:
            old.delete()
        return None
    gold, _ = GoldAnswer.objects.update_or_create(message=message, defaults={"content": text, "author": reviewer})
    return gold


@transaction.atomic
def conversations_delete(*, actor, conversation_ids: list[int]) -> int:
    """Delete whole transcripts (superusers only), leaving an audit row per conversation that says what went in
    ids and counts (never its title or its owner's name), and their words wherever else they are kept (stream
    logs and keys in Redis, the admin's log and earlier audit texts: ``chat/accounts/erasure.py``). A reply still
    being written is stopped as its owner's deletion stops it."""
    if not (actor.is_active and actor.is_superuser):
        raise ChatError(ErrorCode.FORBIDDEN, gettext("Only a superuser may delete transcripts."))
    deleted = 0
    for ids in id_chunks(conversation_ids):
        rows = list(Conversation.objects.filter(pk__in=ids).values("pk", "owner_id"))
        found = [r["pk"] for r in rows]
        counts = message_counts(conversation_ids=found)
        erasure.conversations_erase(found)  # before the audit rows below: it scrubs earlier ones
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(
                    actor=actor,
                    actor_name=actor.get_username(),
                    action=Action.DELETED,
                    conversation_id=r["pk"],
                    details={"owner_id": r["owner_id"], "messages": counts.get(r["pk"], 0)},
                )
                for r in rows
            ]
        )
        replies_end_for_deletion(conversation_ids=found)
        Conversation.objects.filter(pk__in=found).delete()
        deleted += len(rows)
    return deleted


@dataclass(frozen=True)
class ExportRecord:
    """An export whose audit rows are written: its id (in each row's details), how many conversations it
    covers, and the last conversation id then, so the stream walks the same set."""

    id: uuid.UUID
    kind: str
    count: int
    upto: int


@transaction.atomic
def export_record(*, actor, kind: str, conversations: QuerySet) -> ExportRecord:
    """Record that ``actor`` exports these conversations as a dataset: one ``exported`` audit row per
    conversation, all carrying the same export id, written in batches before a single line is sent."""
    _require_reviewer(actor)
    if kind not in KINDS:
        raise ChatError(ErrorCode.INVALID_KIND, gettext("An export is either sft or pairs."))
    export_id, count, upto = uuid.uuid4(), 0, 0
    details = {"kind": kind, "export": str(export_id)}
    for ids in id_chunks(conversations, size=EXPORT_AUDIT_BATCH):
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(
                    actor=actor,
                    actor_name=actor.get_username(),
                    action=Action.EXPORTED,
                    conversation_id=pk,
                    details=details,
                )
                for pk in ids
            ]
        )
        count, upto = count + len(ids), ids[-1]
    return ExportRecord(id=export_id, kind=kind, count=count, upto=upto)


@transaction.atomic
def reply_cancel(*, actor, message_ids: list[int]) -> dict[int, StopOutcome]:
    """Stop replies being generated, exactly as their owner's Stop would (``services.reply_stop``: a queued
    reply ends now, a streaming one is ended by its worker with the text so far); one audit row per reply
    stopped. A reply that had already ended, or is no reply, is reported ``already_finished`` and left alone."""
    _require_reviewer(actor)
    outcomes = {int(pk): StopOutcome.ALREADY_FINISHED for pk in message_ids}
    for ids in id_chunks(outcomes):
        audit = []
        for reply in (
            Message.objects.filter(pk__in=ids, role=Message.Role.ASSISTANT)
            .select_related("conversation")
            .order_by("pk")
        ):
            outcomes[reply.pk] = outcome = reply_stop(message=reply)
            if outcome != StopOutcome.ALREADY_FINISHED:
                audit.append(
                    AuditEvent(
                        actor=actor,
                        actor_name=actor.get_username(),
                        action=Action.CANCELLED_GENERATION,
                        conversation_id=reply.conversation_id,
                        message_id=reply.pk,
                        details={
                            "was": reply.status,
                            "outcome": outcome.value,
                            "owner_id": reply.conversation.owner_id,
                        },
                    )
                )
        AuditEvent.objects.bulk_create(audit)
    return outcomes
