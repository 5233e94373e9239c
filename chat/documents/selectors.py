"""Reads of attachments: as the page and the exports show them, and those a reply's prompt may quote."""

from __future__ import annotations

from django.db.models import Count

from chat.models import Attachment


def attachment_payload(attachment: Attachment, passages: int | None = None) -> dict:
    return {
        "id": attachment.pk,
        "name": attachment.name,
        "kind": attachment.kind,
        "size": attachment.size,
        "pages": attachment.pages,
        "passages": passages if passages is not None else getattr(attachment, "passage_count", None),
        "chars": len(attachment.text),
    }


def attachments_by_message(*, message_ids: list[int]) -> dict[int, list[dict]]:
    """The attachments of these messages, by message, oldest first (one query)."""
    rows = (
        Attachment.objects.filter(message_id__in=message_ids).annotate(passage_count=Count("passages")).order_by("id")
    )
    found: dict[int, list[dict]] = {}
    for a in rows:
        found.setdefault(a.message_id, []).append(attachment_payload(a))
    return found


def attachments_pending_for_user(*, user) -> list[dict]:
    rows = Attachment.objects.filter(owner=user, message__isnull=True).annotate(passage_count=Count("passages"))
    return [attachment_payload(a) for a in rows.order_by("id")]


def attachments_for_conversation(*, conversation_id: int) -> list[Attachment]:
    """Every attachment of a conversation, with its text: the exports and the review panel's transcript."""
    return list(Attachment.objects.filter(conversation_id=conversation_id).order_by("id"))


def attachments_for_prompt(*, conversation_id: int, up_to_message_id: int) -> list[Attachment]:
    """The documents a question may draw on: every attachment sent in its conversation up to the question (the
    documents belong to the conversation, so an edited or regenerated turn still reads them)."""
    return list(
        Attachment.objects.filter(conversation_id=conversation_id, message_id__lte=up_to_message_id)
        .annotate(passage_count=Count("passages"))
        .order_by("id")
    )
