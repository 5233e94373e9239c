"""Writes of attachments: a file uploaded (extracted, cut into passages, stored as the person's pending
attachment), a pending one removed, pending ones linked to the message a ``send`` stores, and the sources a
reply's prompt quoted. Every lookup is scoped to the person: another's attachment id is simply not found."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Sum
from django.db.models.functions import Length
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import store
from chat.documents import chunking, extract, search
from chat.errors import ChatError, ErrorCode
from chat.models import Attachment, Message, Passage
from chat.names import uploading_key
from chat.text import clean_text

# A file attached and never sent is the person's until this old; the next upload clears it.
PENDING_KEPT = timedelta(days=1)


def not_found() -> ChatError:
    return ChatError(ErrorCode.NOT_FOUND, _("No such attachment, or it is not yours."))


def limits() -> extract.Limits:
    return extract.Limits(
        max_pages=settings.CHAT_ATTACHMENT_MAX_PAGES,
        max_chars=settings.CHAT_ATTACHMENT_MAX_CHARS,
        max_unzipped_bytes=settings.CHAT_ATTACHMENT_MAX_UNZIPPED_BYTES,
        max_seconds=settings.CHAT_ATTACHMENT_EXTRACT_S,
    )


def too_large() -> ChatError:
    return ChatError(
        ErrorCode.FILE_TOO_LARGE,
        _("This file is too large: at most %(mb)s MB.") % {"mb": _megabytes(settings.CHAT_ATTACHMENT_MAX_BYTES)},
    )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g}"


@asynccontextmanager
async def one_file_at_a_time(user_id: int):
    """Hold the person's one reading place while a file of theirs is read (a Redis key, so across processes): a
    person uploading many files at once waits on themself, and everyone else's uploads go on. Refused while held.
    Kept longer than any extraction may take (its clock, then the store), so a crashed process frees it."""
    redis = store.async_client()
    held = uploading_key(user_id)
    if not await redis.set(held, "1", nx=True, ex=int(settings.CHAT_ATTACHMENT_EXTRACT_S) + 30):
        raise ChatError(ErrorCode.RATE_LIMITED, _("Another of your files is being read: wait until it is done."))
    try:
        yield
    finally:
        await redis.delete(held)


def attachment_name(name) -> str:
    return clean_text(os.path.basename(str(name or "").replace("\\", "/")))[:255].strip() or "document.txt"


def attachment_admit(*, user, name: str, size: int) -> None:
    """The refusals that need no reading of the file: too large, a kind not read, as many pending as one message
    may carry. A person's pending attachments older than a day are cleared here."""
    if size > settings.CHAT_ATTACHMENT_MAX_BYTES:
        raise too_large()
    extract.kind_of(name)
    if Attachment.objects.filter(
        owner=user, message__isnull=True, created_at__lt=timezone.now() - PENDING_KEPT
    ).delete()[0]:
        transaction.on_commit(search.index_forget_deleted)
    if Attachment.objects.filter(owner=user, message__isnull=True).count() >= settings.CHAT_ATTACHMENTS_PER_MESSAGE:
        raise _too_many_per_message()


def attachment_store(*, user, name: str, size: int, found: extract.Extracted) -> Attachment:
    """Store extracted text as the person's pending attachment, with its passages; refused when it would take
    the person past their total."""
    used = Attachment.objects.filter(owner=user).aggregate(chars=Sum(Length("text")))["chars"] or 0
    if used + len(found.text) > settings.CHAT_ATTACHMENT_TOTAL_CHARS:
        raise ChatError(
            ErrorCode.ATTACHMENTS_FULL,
            _("Your attached documents have reached their total size; delete conversations with documents first."),
        )
    pieces = chunking.passages(found.text, settings.CHAT_ATTACHMENT_PASSAGE_CHARS, found.pages)
    with transaction.atomic():
        attachment = Attachment.objects.create(
            owner=user,
            name=name,
            kind=found.kind,
            size=size,
            pages=len(found.pages) if found.pages is not None else None,
            text=found.text,
        )
        Passage.objects.bulk_create(
            Passage(attachment=attachment, seq=seq, page=page, text=text)
            for seq, (page, text) in enumerate(pieces, start=1)
        )
    attachment.passage_count = len(pieces)
    return attachment


def attachment_upload(*, user, name: str, data: bytes) -> Attachment:
    """All three steps in one thread (tests, a command); the view runs the extraction off the database thread."""
    name = attachment_name(name)
    attachment_admit(user=user, name=name, size=len(data))
    return attachment_store(user=user, name=name, size=len(data), found=extract.extract(name, data, limits()))


def _too_many_per_message() -> ChatError:
    return ChatError(
        ErrorCode.TOO_MANY_ATTACHMENTS,
        _("At most %(count)s files can be attached to one message.") % {"count": settings.CHAT_ATTACHMENTS_PER_MESSAGE},
    )


def attachment_remove_pending(*, user, attachment_id: int) -> None:
    """Take back a file attached to the message being written (not yet sent)."""
    if not Attachment.objects.filter(pk=attachment_id, owner=user, message__isnull=True).delete()[0]:
        raise not_found()
    transaction.on_commit(search.index_forget_deleted)


def attachments_link(*, user, message: Message, attachment_ids) -> list[Attachment]:
    """Inside ``send``'s transaction: the person's pending attachments named by the frame become the message's
    and its conversation's. An id that is not one of the person's pending attachments (another person's, one
    already sent, a made-up one) refuses the whole send."""
    if not attachment_ids:
        return []
    if not isinstance(attachment_ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**63 for i in attachment_ids
    ):
        raise ChatError(ErrorCode.BAD_ID, _("attachments must be a list of attachment ids."))
    ids = list(dict.fromkeys(attachment_ids))
    if len(ids) > settings.CHAT_ATTACHMENTS_PER_MESSAGE:
        raise _too_many_per_message()
    already = Attachment.objects.filter(conversation_id=message.conversation_id).count()
    if already + len(ids) > settings.CHAT_ATTACHMENTS_PER_CONVERSATION:
        raise ChatError(
            ErrorCode.TOO_MANY_ATTACHMENTS,
            _("At most %(count)s files can be attached to one conversation; start a new chat for more.")
            % {"count": settings.CHAT_ATTACHMENTS_PER_CONVERSATION},
        )
    linked = Attachment.objects.filter(pk__in=ids, owner=user, message__isnull=True).update(
        conversation_id=message.conversation_id, message=message
    )
    if linked != len(ids):
        raise not_found()  # the transaction rolls the whole send back
    return list(Attachment.objects.filter(pk__in=ids).annotate(passage_count=Count("passages")).order_by("id"))


def reply_sources_store(*, message_id: int, sources: list[dict]) -> None:
    """Worker: the passages the reply's prompt quoted, kept on the reply (sent with its ``done``, shown under it)."""
    Message.objects.filter(pk=message_id).update(sources=sources)
