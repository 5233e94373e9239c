"""Reads about accounts: whether a person may chat (approval), which invite a sign-up link is."""

from __future__ import annotations

from django.utils import timezone

from chat.errors import ChatError, ErrorCode
from chat.models import Account, Invite

# --- Accounts: who may chat, which invite a sign-up link is.
NOT_APPROVED = (
    "Your account is waiting for approval by the site's staff: you can look around, but you cannot "
    "send messages until they approve it."
)


def account_may_chat(*, user) -> bool:
    """Whether this person may send messages: staff always; others unless their account awaits approval (a
    user without an Account row was made by staff and counts as approved)."""
    if user.is_staff or user.is_superuser:
        return True
    return not Account.objects.filter(user_id=user.pk, approved_at__isnull=True).exists()


def invite_for_signup(*, token) -> Invite:
    """The invite a sign-up link carries, or ``ChatError`` saying why it cannot be used."""
    invite = Invite.objects.filter(token=token).first() if isinstance(token, str) and token else None
    if invite is None:
        raise ChatError(
            ErrorCode.INVITE_UNKNOWN,
            "This invite link is not valid: check that you copied all of it, or "
            "ask the person who sent it for a new one.",
        )
    if invite.used_at is not None:
        raise ChatError(
            ErrorCode.INVITE_USED,
            "This invite link has already been used; each link signs up one person. Ask for a new one.",
        )
    if invite.expires_at <= timezone.now():
        raise ChatError(
            ErrorCode.INVITE_EXPIRED,
            f"This invite link expired on {invite.expires_at:%Y-%m-%d %H:%M} UTC; ask for a new one.",
        )
    return invite
