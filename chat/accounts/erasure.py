"""What a deletion removes beyond the deleted rows themselves: the person's words this project keeps elsewhere.

Every deletion of a person's words — a conversation by its owner (``conversations.services``), transcripts by
staff (``review.services``), a whole account (``accounts.services``) — calls these inside its transaction, before
the rows go:

- Redis: each reply's stream log (its text, kept ``CHAT_STREAM_TTL_S`` after its last delta), progress, lease and
  hand-over keys (``chat.names.reply_keys``), deleted once the deletion commits;
- the Django admin's log (``LogEntry``): rows about the deleted objects keep their ids only — ``object_repr`` is
  ``str(obj)`` when logged (a conversation's title, a person's username) and the admin logs a deletion before it
  deletes;
- the review panel's audit rows (``AuditEvent``) about the deleted conversations keep ids and states only: their
  titles, owners' names, review notes and gold answers' texts go;
- SQLite's full-text index of their documents' passages is merged at the next sweep once it commits, so the
  deleted words leave the index's segments too (``chat.documents.search.index_forget_deleted``).

What stays, where and for how long is in docs/security.md ("Privacy: what a deletion removes").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone
from redis.exceptions import RedisError

from chat import events
from chat.documents import search
from chat.models import Attachment, AuditEvent, Conversation, Message, TrainingRun
from chat.names import reply_keys
from chat.store import client

log = logging.getLogger(__name__)

CHUNK = 500  # ids bound per statement, keys per Redis call
# Texts an audit row's details may hold, per action (ids, states, counts and kinds stay).
AUDIT_TEXTS = {
    AuditEvent.Action.DELETED: ("title", "owner"),
    AuditEvent.Action.REVIEW_CHANGED: ("note",),
    AuditEvent.Action.GOLD_ANSWER_CHANGED: ("previous", "content"),
}


def _chunks(ids: Iterable) -> Iterator[list]:
    ids = list(ids)
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def replies_with_keys(conversation_ids: Iterable[int]) -> list[int]:
    """The replies of these conversations that may still have keys in Redis: those not ended (queued, streaming,
    or with no end stored), and those that ended within twice the stream log's life (a log expires
    ``CHAT_STREAM_TTL_S`` after its last delta; twice, for the machines' clocks and a worker that went on a
    little after the end was stored). Older replies' keys have expired: a long history costs no Redis calls."""
    since = timezone.now() - timedelta(seconds=2 * settings.CHAT_STREAM_TTL_S)
    recent = Q(status__in=Message.ACTIVE_STATUSES) | Q(finished_at__isnull=True) | Q(finished_at__gte=since)
    found: list[int] = []
    for ids in _chunks(conversation_ids):
        found += Message.objects.filter(recent, conversation_id__in=ids, role=Message.Role.ASSISTANT).values_list(
            "pk", flat=True
        )
    return found


def replies_forget(message_ids: Iterable[int]) -> None:
    """Delete every key Redis keeps about these replies (stream logs, progress, leases, hand-overs). Logged, never
    raised: a stream log expires by itself ``CHAT_STREAM_TTL_S`` after its last delta."""
    keys = [key for message_id in message_ids for key in reply_keys(message_id)]
    try:
        for chunk in _chunks(keys):
            client().unlink(*chunk)
    except RedisError:
        log.warning("could not delete the Redis keys of %s deleted replies", len(keys) // 4, exc_info=True)


def _content_types(model) -> Q:
    """The model's content type and its proxies' (the admin logs a proxy's rows under the proxy's type), as a
    filter on the log's rows: by name, so the cost is one statement whatever Django's content-type cache holds."""
    concrete = model._meta.concrete_model
    family = [m._meta.model_name for m in apps.get_models() if m._meta.concrete_model is concrete]
    return Q(content_type__app_label=concrete._meta.app_label, content_type__model__in=family)


def admin_log_scrub(model, ids: Iterable) -> int:
    """The Django admin's log rows about these objects keep ids only: ``object_repr`` becomes "<model> <id>" and
    ``change_message`` (field names, or an admin's own words) is emptied. Returns the rows changed."""
    types = _content_types(model)
    label = f"{model._meta.concrete_model._meta.verbose_name} "
    changed = 0
    for chunk in _chunks(str(i) for i in ids):
        changed += LogEntry.objects.filter(types, object_id__in=chunk).update(
            object_repr=Concat(Value(label), F("object_id")), change_message=""
        )
    return changed


def _strip(row: AuditEvent, keys: Iterable[str]) -> bool:
    """Drop ``keys`` from the row's details; True when any was there."""
    dropped = [key for key in keys if key in row.details]
    for key in dropped:
        del row.details[key]
    if dropped:
        row.details["erased"] = True
    return bool(dropped)


def audit_scrub(conversation_ids: Iterable[int]) -> int:
    """Audit rows about these conversations keep ids and states only: the texts ``AUDIT_TEXTS`` names go (a row
    keeps ``"erased": true`` in their place). Returns the rows changed."""
    changed = []
    for ids in _chunks(conversation_ids):
        for row in AuditEvent.objects.filter(conversation_id__in=ids, action__in=list(AUDIT_TEXTS)):
            if _strip(row, AUDIT_TEXTS[row.action]):
                changed.append(row)
    AuditEvent.objects.bulk_update(changed, ["details"], batch_size=CHUNK)
    return len(changed)


def audit_scrub_person(*, user_id: int, username: str) -> int:
    """Audit rows that name a person being deleted: a transcript of theirs deleted earlier (its title and their
    username, in rows written before deletions kept ids only) and a staff search for their username (the words
    searched go; the page and the count of results stay). Returns the rows changed."""
    changed = []
    for row in AuditEvent.objects.filter(action=AuditEvent.Action.DELETED, details__owner_id=user_id):
        if _strip(row, AUDIT_TEXTS[AuditEvent.Action.DELETED]):
            changed.append(row)
    named = re.compile(rf"(?<!\w){re.escape(username)}(?!\w)", re.IGNORECASE)
    for row in AuditEvent.objects.filter(action=AuditEvent.Action.SEARCHED, details__query__icontains=username):
        if named.search(str(row.details.get("query", ""))) and _strip(row, ("query",)):
            changed.append(row)
    AuditEvent.objects.bulk_update(changed, ["details"], batch_size=CHUNK)
    return len(changed)


def runs_flag(conversation_ids: Iterable[int]) -> int:
    """Training runs that used these conversations are flagged (``uses_deleted_data``: the adapter learnt from
    words that are gone), and the answers their evaluation stored for these conversations' held-out examples go
    (the prompt and gold answer were never copied: the run page reads them from the rows). Returns the runs
    flagged."""
    flagged = 0
    for ids in _chunks(conversation_ids):
        # Locked: a worker's run_finish writing the metrics meanwhile must not be overwritten by the old ones.
        run_ids = TrainingRun.objects.filter(examples__conversation_id__in=ids).values_list("pk", flat=True)
        runs = list(TrainingRun.objects.select_for_update().filter(pk__in=list(run_ids)).order_by("pk"))
        for run in runs:
            run.uses_deleted_data = True
            rows = (run.metrics or {}).get("evaluation", {}).get("rows", [])
            for row in rows:
                if row.get("conversation") in ids:
                    for arm in ("candidate", "base", "default"):
                        if isinstance(row.get(arm), dict):
                            row[arm].pop("answer", None)
                    row["erased"] = True
        TrainingRun.objects.bulk_update(runs, ["uses_deleted_data", "metrics"])
        flagged += len(runs)
    return flagged


def conversations_erase(conversation_ids: list[int]) -> list[int]:
    """Inside a deletion's transaction, before these conversations' rows go: the admin's log and the audit rows
    about them keep ids only, the training runs that used them are flagged, and once it commits, their replies
    still being written are told to stop and every Redis key of their recent replies goes. Returns those
    replies' ids."""
    replies = replies_with_keys(conversation_ids)
    admin_log_scrub(Conversation, conversation_ids)
    audit_scrub(conversation_ids)
    runs_flag(conversation_ids)
    active = []
    for ids in _chunks(conversation_ids):
        active += Message.objects.filter(conversation_id__in=ids, status__in=Message.ACTIVE_STATUSES).values_list(
            "pk", flat=True
        )

    documents = any(Attachment.objects.filter(conversation_id__in=ids).exists() for ids in _chunks(conversation_ids))

    def after_commit():
        for message_id in active:
            events.broadcast_cancel_sync(message_id)  # a worker writing one stops, and adds no more to its log
        replies_forget(replies)
        if documents:
            search.index_forget_deleted()

    transaction.on_commit(after_commit)
    return replies


def pending_documents_forget(user_id: int) -> None:
    """A person's files attached to no message yet go with their account: their words leave the full-text
    index once that commits, as a deleted conversation's documents' do."""
    if Attachment.objects.filter(owner_id=user_id, conversation__isnull=True).exists():
        transaction.on_commit(search.index_forget_deleted)
