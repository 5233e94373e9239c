"""Account writes: sign-up under the site's policy (``CHAT_SIGNUP``), approval by staff, invites, and deleting an
account with everything in it. Keyword-only and atomic, like ``chat/services.py``; reads are in
``chat/selectors.py`` (``account_may_chat``, ``invite_for_signup``) and ``chat/personal_data.py``.
"""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.db import transaction
from django.utils import timezone

from . import events, quotas, selectors
from .errors import ChatError
from .models import Account, AuditEvent, Invite
from .redis import client, sockets_key

log = logging.getLogger(__name__)

INVITE_ONLY = ("Sign-up on this site is by invitation only: ask the site's staff for an invite link, then open "
               "it to create your account.")


@transaction.atomic
def account_signup(*, username: str, email: str, password: str, invite_token: str | None = None):
    """Create a person's user and Account. With a valid invite (required when ``CHAT_SIGNUP`` is ``invite``) the
    invite is used up and the account approved at once; under ``approval`` without one it awaits staff."""
    mode = settings.CHAT_SIGNUP
    if mode == "invite" and not invite_token:
        raise ChatError("invite_required", INVITE_ONLY)
    invite = selectors.invite_for_signup(token=invite_token) if invite_token else None
    if invite is not None and invite.email and invite.email.casefold() != email.casefold():
        raise ChatError("invite_email", "This invite link is for another email address: sign up with the address "
                                        "the invite was sent to.")
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    now = timezone.now()
    approved = invite is not None or mode != "approval"
    Account.objects.create(user=user, approved_at=now if approved else None,
                           approved_by=invite.created_by if invite is not None else None)
    if invite is not None:
        # Conditional, so two people racing with one link cannot both sign up: the loser's user is rolled back.
        if not Invite.objects.filter(pk=invite.pk, used_at__isnull=True, expires_at__gt=now).update(
                used_by=user, used_at=now):
            raise ChatError("invite_used", "This invite link has just been used by someone else; ask for a new one.")
    return user


def account_approve(*, user_ids, approved_by) -> int:
    """Let people who await approval chat; returns how many were waiting. Approved accounts stay as they are."""
    return Account.objects.filter(user_id__in=list(user_ids), approved_at__isnull=True).update(
        approved_at=timezone.now(), approved_by=approved_by)


def invite_create(*, created_by, email: str = "", note: str = "", days: int | None = None) -> Invite:
    """A new single-use sign-up link, valid for ``days`` (``CHAT_INVITE_DAYS`` by default)."""
    valid = timedelta(days=settings.CHAT_INVITE_DAYS if days is None else days)
    return Invite.objects.create(token=secrets.token_urlsafe(32), email=email.strip(), note=note.strip(),
                                 created_by=created_by, expires_at=timezone.now() + valid)


def account_delete(*, user_id: int) -> dict[str, int]:
    """Delete a person and everything that is theirs: conversations, messages, feedback, gold answers on their
    replies, API keys, their Account, allowance and defaults, their login records, every session signed in as
    them. Rows that must outlive them (audit rows they wrote, the invite they used) keep only ids. After the
    commit their open sockets are told and close, and their counters in Redis go. Returns rows deleted per
    model."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    allowance = quotas.allowance_for(user_id)  # read before its override row goes: its rate window's key
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user_id)
        username = user.get_username()
        AuditEvent.objects.filter(actor_id=user_id).update(actor_name=f"deleted user {user_id}")
        Invite.objects.filter(used_by_id=user_id).update(email="", note="")
        counts: dict[str, int] = {}
        for model in (AccessAttempt, AccessFailureLog, AccessLog):
            counts[model._meta.label] = model.objects.filter(username=username).delete()[0]
        counts["sessions"] = _sessions_delete(user_id)
        # Cascades: conversations (owner) → messages → feedback and gold answers; API keys; the Account,
        # QuotaOverride and ChatDefaults rows; admin log rows.
        _, by_model = user.delete()
        counts.update(by_model)
        # Every socket of the person re-reads its session, finds no user and closes (the one logout uses).
        transaction.on_commit(lambda: events.notify_event(user_id, events.session_ended_event("")))
        transaction.on_commit(lambda: _counters_forget(user_id, allowance))
    return counts


def _sessions_delete(user_id: int) -> int:
    """Delete every unexpired session signed in as the person (their other browsers), not only this one.

    Sessions are not indexed by user, so this reads each unexpired session once, in chunks: a rare action, and
    a cheap read per session (a signature check). Session engines that store nothing the server can list
    (signed cookies, plain cache) are skipped: once the user is gone such a session finds no one.
    """
    engine = import_module(settings.SESSION_ENGINE)
    store = engine.SessionStore
    if not hasattr(store, "get_model_class"):
        return 0
    mine = []
    rows = (store.get_model_class().objects.filter(expire_date__gt=timezone.now())
            .values_list("session_key", "session_data"))
    for key, data in rows.iterator(chunk_size=2000):
        if str(store().decode(data).get(SESSION_KEY)) == str(user_id):
            mine.append(key)
    for key in mine:
        store(session_key=key).delete()  # through the store: cached_db forgets its cached copy too
    return len(mine)


def _counters_forget(user_id: int, allowance: quotas.Allowance) -> None:
    """A deleted person's counters in Redis: tokens per day, messages per minute, open sockets."""
    from redis.exceptions import RedisError

    quotas.counters_forget(user_id, allowance)
    try:
        client().delete(sockets_key(user_id))
    except RedisError:  # it expires by itself within 3 socket refreshes
        log.warning("could not forget the sockets of deleted user %s", user_id, exc_info=True)
