"""Share links' reads: a person's own links (the Account page, the chat page's Share dialog) and the public
snapshot behind a token, which anyone may read without signing in."""

from __future__ import annotations

from collections.abc import Callable

from django.urls import reverse
from django.utils.translation import gettext as _

from chat.errors import ChatError, ErrorCode
from chat.models import Conversation, Message, ShareLink


def share_payload(share: ShareLink, url: str) -> dict:
    """A link as the owner's pages show it; ``url`` is its absolute address (the view knows the host)."""
    return {
        "id": share.pk,
        "conversation": share.conversation_id,
        "title": share.title,
        "url": url,
        "messages": len(share.message_ids),
        "created_at": share.created_at.isoformat(),
    }


def link_url(share: ShareLink, absolute: Callable[[str], str]) -> str:
    """A link's address; ``absolute`` makes a path absolute (``request.build_absolute_uri``: the host asked)."""
    return absolute(reverse("chat:shared", args=[share.token]))


def _live(user):
    """The person's live links, newest first (revoked ones are gone from every list)."""
    return ShareLink.objects.filter(owner=user, revoked_at__isnull=True).order_by("-created_at", "-id")


def shares_for_user(*, user) -> list[ShareLink]:
    return list(_live(user))


def share_rows(*, user, absolute: Callable[[str], str]) -> list[dict]:
    """The Account page's list: each live link as the Share dialog shows it, its date kept as a datetime for the
    template to format in the reader's language."""
    return [{**share_payload(s, link_url(s, absolute)), "created": s.created_at} for s in shares_for_user(user=user)]


def shares_for_conversation(*, user, conversation_id: int) -> list[ShareLink]:
    """The live links of one of the person's conversations; another person's conversation is not found."""
    if not Conversation.objects.filter(pk=conversation_id, owner=user).exists():
        raise ChatError(ErrorCode.NOT_FOUND, _("No such conversation, or it is not yours."))
    return list(_live(user).filter(conversation_id=conversation_id))


def shared_snapshot(*, token: str) -> dict:
    """What a link shows: its title and the snapshot's messages (role and text), oldest first. A revoked link,
    one that never existed, and one whose owner's account is deactivated all read alike: gone."""
    share = None
    if len(token) <= 64:  # a token is 43 characters: a longer one is not worth a query
        share = ShareLink.objects.filter(token=token, revoked_at__isnull=True, owner__is_active=True).first()
    if share is None:
        raise ChatError(
            ErrorCode.SHARE_GONE,
            _(
                "This link does not lead anywhere any more: its owner revoked it or deleted the conversation, "
                "or it was mistyped."
            ),
        )
    messages = list(
        Message.objects.filter(conversation_id=share.conversation_id, pk__in=share.message_ids)
        .order_by("id")
        .values("id", "role", "content", "status")
    )
    for m in messages:  # as long as it was when shared: a reply continued later is shown without what followed
        length = share.lengths.get(str(m.pop("id")))
        if length is not None:
            m["content"] = m["content"][:length]
    return {"title": share.title, "created_at": share.created_at, "messages": messages}
