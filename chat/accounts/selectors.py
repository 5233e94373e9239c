"""Reads about accounts: whether a person may chat (approval), which invite a sign-up link is, and what a user or
group may do (the privileges whose changes are audited)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from chat.errors import ChatError, ErrorCode
from chat.models import Account, ChatDefaults, Invite

# --- Accounts: who may chat, which invite a sign-up link is.
NOT_APPROVED = gettext_lazy(
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
            _(
                "This invite link is not valid: check that you copied all of it, or "
                "ask the person who sent it for a new one."
            ),
        )
    if invite.used_at is not None:
        raise ChatError(
            ErrorCode.INVITE_USED,
            _("This invite link has already been used; each link signs up one person. Ask for a new one."),
        )
    if invite.expires_at <= timezone.now():
        raise ChatError(
            ErrorCode.INVITE_EXPIRED,
            _("This invite link expired on %(when)s UTC; ask for a new one.")
            % {"when": f"{invite.expires_at:%Y-%m-%d %H:%M}"},
        )
    return invite


# --- Privileges: what the admin's people and groups pages can give or take away (each change is audited).
APPROVE_PERMISSION = "chat.approve_account"


@dataclass(frozen=True)
class Privileges:
    """What a user row itself grants: its two flags, its groups (by name) and its own permissions
    (``app_label.codename``); for a group only ``permissions`` is used."""

    staff: bool = False
    superuser: bool = False
    groups: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()


def _labels(permissions) -> frozenset[str]:
    return frozenset(
        f"{app}.{codename}" for app, codename in permissions.values_list("content_type__app_label", "codename")
    )


def privileges_of_user(*, user_id: int | None) -> Privileges:
    """As stored now (before a form's changes are saved, or after); a user not yet stored has none."""
    row = get_user_model().objects.filter(pk=user_id).values("is_staff", "is_superuser").first() if user_id else None
    if row is None:
        return Privileges()
    return Privileges(
        staff=row["is_staff"],
        superuser=row["is_superuser"],
        groups=frozenset(Group.objects.filter(user__pk=user_id).values_list("name", flat=True)),
        permissions=_labels(Permission.objects.filter(user__pk=user_id)),
    )


def privileges_of_group(*, group_id: int | None) -> Privileges:
    return Privileges(permissions=_labels(Permission.objects.filter(group__pk=group_id)) if group_id else frozenset())


def may_approve(*, user) -> bool:
    """Whether this staff member may approve people who signed up (the admin's Approve action)."""
    return bool(user.is_active and user.is_staff and user.has_perm(APPROVE_PERMISSION))


def may_train(*, user) -> bool:
    """Whether this user may train, try, experiment with and promote adapters: active staff with
    ``chat.train_model``, on a site where reviewers may read transcripts (``CHAT_REVIEW_ENABLED``: a run reads
    people's conversations, and the chat page tells them so only then). The one check: the training screens,
    the catalog (who may pick an adapter) and the experiments all ask it."""
    from django.conf import settings

    return bool(
        settings.CHAT_REVIEW_ENABLED
        and user is not None
        and getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
        and user.has_perm("chat.train_model")
    )


def stored_language(user) -> str:
    """The person's chosen language for the pages (one of settings.LANGUAGES), or "" (their browser's)."""
    if not getattr(user, "pk", None):
        return ""
    language = ChatDefaults.objects.filter(user=user).values_list("language", flat=True).first() or ""
    return language if language in dict(settings.LANGUAGES) else ""
