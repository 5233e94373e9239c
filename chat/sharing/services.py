"""Share links' writes: making one (a snapshot of the shown branch's ids) and revoking one, only by the owner.

The person's row is locked while a link is made, so two tabs sharing at once cannot both pass the bounds
(``CHAT_SHARE_LINKS_MAX`` live links, ``CHAT_SHARE_LINKS_PER_HOUR`` new ones)."""

from __future__ import annotations

import math
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from chat.errors import ChatError, ErrorCode
from chat.models import Conversation, Message, ShareLink, lock_person

# 32 random bytes: 256 bits, 43 URL-safe characters. Never derived from the conversation, never sequential.
TOKEN_BYTES = 32


def _not_found() -> ChatError:
    # Another person's conversation gets the same answer as one that does not exist: nothing about it leaks.
    return ChatError(ErrorCode.NOT_FOUND, _("No such conversation, or it is not yours."))


def shared_messages(conversation: Conversation) -> list[tuple[int, int]]:
    """The snapshot: the shown branch's messages that have ended and hold text, oldest first, each with its
    text's length then. A reply still being written is left out (its text is not final), as is a failed reply
    with no text; a reply cut at its length bound may be continued later (the same row grows), so the link keeps
    how much of it there was."""
    return [
        (pk, len(content))
        for pk, content in Message.objects.filter(conversation=conversation, is_current=True)
        .exclude(status__in=Message.ACTIVE_STATUSES)
        .exclude(content="")
        .order_by("id")
        .values_list("id", "content")
    ]


def share_create(*, user, conversation_id: int) -> ShareLink:
    """A new link to the conversation's shown branch as it is now; later messages are not in it."""
    with transaction.atomic():
        lock_person(user.pk)
        conversation = Conversation.objects.filter(pk=conversation_id, owner=user).first()
        if conversation is None:
            raise _not_found()
        if not conversation.content_kept:
            raise ChatError(
                ErrorCode.NOTHING_TO_SHARE,
                _("This conversation keeps no text (its API key stores none), so there is nothing to share."),
            )
        shared = shared_messages(conversation)
        if not shared:
            raise ChatError(ErrorCode.NOTHING_TO_SHARE, _("This conversation has no finished message to share yet."))
        mine = ShareLink.objects.filter(owner=user)
        limit = settings.CHAT_SHARE_LINKS_MAX
        if mine.filter(revoked_at__isnull=True).count() >= limit:
            raise ChatError(
                ErrorCode.TOO_MANY_SHARE_LINKS,
                _("You have %(limit)d share links already: revoke one on the Account page first.") % {"limit": limit},
            )
        now = timezone.now()
        recent = mine.filter(created_at__gt=now - timedelta(hours=1)).order_by("created_at")
        made = list(recent.values_list("created_at", flat=True))
        if len(made) >= settings.CHAT_SHARE_LINKS_PER_HOUR:
            wait = max(1, math.ceil((made[0] + timedelta(hours=1) - now).total_seconds()))
            raise ChatError(
                ErrorCode.RATE_LIMITED,
                ngettext(
                    "You made %(count)d share links in the last hour: try again in %(minutes)d minute.",
                    "You made %(count)d share links in the last hour: try again in %(minutes)d minutes.",
                    math.ceil(wait / 60),
                )
                % {"count": len(made), "minutes": math.ceil(wait / 60)},
                retry_after=wait,
            )
        return ShareLink.objects.create(
            owner=user,
            conversation=conversation,
            token=secrets.token_urlsafe(TOKEN_BYTES),
            title=conversation.title,
            message_ids=[pk for pk, _length in shared],
            lengths={str(pk): length for pk, length in shared},
        )


def share_revoke(*, user, share_id: int) -> ShareLink:
    """Revoke one of the person's links: from now on it shows the page that says it is gone. Revoking a link
    already revoked changes nothing."""
    share = ShareLink.objects.filter(pk=share_id, owner=user).first()
    if share is None:
        raise ChatError(ErrorCode.NOT_FOUND, _("No such share link, or it is not yours."))
    if share.revoked_at is None:
        share.revoked_at = timezone.now()
        ShareLink.objects.filter(pk=share.pk, revoked_at__isnull=True).update(revoked_at=share.revoked_at)
    return share
