"""Account writes: sign-up under the site's policy (``CHAT_SIGNUP``), approval by staff, invites, the audit rows of
privileges given or taken away in the admin, and deleting an account with everything in it. Keyword-only and
atomic, like every ``services.py``; reads are in ``chat/accounts/selectors.py`` (``account_may_chat``,
``invite_for_signup``, ``privileges_of_user``) and ``chat/accounts/personal_data.py``.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from chat import events, store
from chat.accounts import erasure, selectors, session_index
from chat.accounts.selectors import Privileges
from chat.errors import ChatError, ErrorCode
from chat.limits import addresses, quotas, sockets
from chat.models import Account, AuditEvent, ChatDefaults, Invite

INVITE_ONLY = gettext_lazy(
    "Sign-up on this site is by invitation only: ask the site's staff for an invite link, then open "
    "it to create your account."
)


def account_signup(
    *, username: str, email: str, password: str, invite_token: str | None = None, client_address: str | None = None
):
    """Create a person's user and Account. With a valid invite (required when ``CHAT_SIGNUP`` is ``invite``) the
    invite is used up and the account approved at once; under ``approval`` without one it awaits staff. Without
    an invite, ``client_address`` may make CHAT_SIGNUPS_PER_HOUR accounts an hour (``signup_rate_limited``)."""
    mode = settings.CHAT_SIGNUP
    if mode == "invite" and not invite_token:
        raise ChatError(ErrorCode.INVITE_REQUIRED, INVITE_ONLY)
    invite = selectors.invite_for_signup(token=invite_token) if invite_token else None
    if invite is not None and invite.email and invite.email.casefold() != email.casefold():
        raise ChatError(
            ErrorCode.INVITE_EMAIL,
            gettext("This invite link is for another email address: sign up with the address the invite was sent to."),
        )
    if invite is None:
        addresses.signup_hit(client_address)  # Redis, before the write transaction opens
    with transaction.atomic():
        return _account_create(username=username, email=email, password=password, invite=invite, mode=mode)


def _account_create(*, username: str, email: str, password: str, invite, mode: str):
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    now = timezone.now()
    approved = invite is not None or mode != "approval"
    Account.objects.create(
        user=user, approved_at=now if approved else None, approved_by=invite.created_by if invite is not None else None
    )
    if invite is not None:
        # Conditional, so two people racing with one link cannot both sign up: the loser's user is rolled back.
        if not Invite.objects.filter(pk=invite.pk, used_at__isnull=True, expires_at__gt=now).update(
            used_by=user, used_at=now
        ):
            raise ChatError(
                ErrorCode.INVITE_USED,
                gettext("This invite link has just been used by someone else; ask for a new one."),
            )
    return user


def account_approve(*, user_ids, approved_by) -> int:
    """Let people who await approval chat; returns how many were waiting. Approved accounts stay as they are."""
    return Account.objects.filter(user_id__in=list(user_ids), approved_at__isnull=True).update(
        approved_at=timezone.now(), approved_by=approved_by
    )


@transaction.atomic
def privileges_audit(*, actor, before: Privileges, after: Privileges, user=None, group=None) -> int:
    """One audit row per privilege a user (or a group, for its permissions) gained or lost between ``before``
    and ``after``, in ``actor``'s name: who, whom, what. The admin calls it in the transaction of its save, so a
    change and its rows commit together. Returns the rows written."""
    whom = {"user_id": user.pk, "user": user.get_username()} if user is not None else {}
    if group is not None:
        whom = {"group_id": group.pk, "group": group.name}
    changes = []
    for what, was, now in (("staff", before.staff, after.staff), ("superuser", before.superuser, after.superuser)):
        if was != now:
            changes.append((now, {"what": what}))
    for what, was, now in (
        ("group", before.groups, after.groups),
        ("permission", before.permissions, after.permissions),
    ):
        changes += [(True, {"what": what, "name": name}) for name in sorted(now - was)]
        changes += [(False, {"what": what, "name": name}) for name in sorted(was - now)]
    changes.sort(key=lambda change: not change[0])  # grants first, then removals, each in a fixed order
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                actor=actor,
                actor_name=actor.get_username(),
                action=AuditEvent.Action.PRIVILEGE_GRANTED if granted else AuditEvent.Action.PRIVILEGE_REMOVED,
                details={**whom, **what},
            )
            for granted, what in changes
        ]
    )
    return len(changes)


def invite_create(*, created_by, email: str = "", note: str = "", days: int | None = None) -> Invite:
    """A new single-use sign-up link, valid for ``days`` (``CHAT_INVITE_DAYS`` by default)."""
    valid = timedelta(days=settings.CHAT_INVITE_DAYS if days is None else days)
    return Invite.objects.create(
        token=secrets.token_urlsafe(32),
        email=email.strip(),
        note=note.strip(),
        created_by=created_by,
        expires_at=timezone.now() + valid,
    )


def account_delete(*, user_id: int) -> dict[str, int]:
    """Delete a person and everything that is theirs: conversations, messages, feedback, gold answers on their
    replies, API keys, their Account, allowance and defaults, their login records, their sessions (every
    browser they signed in from, by the session index). Rows that must outlive them (audit rows they wrote or
    that are about them, the admin's log, the invite they used) keep only ids. After the commit their open
    sockets are told and close, their replies still being written stop, and their replies' keys, counters and
    index in Redis go; nothing is charged to them any more. Self-service and staff in the admin both come here.
    Returns rows deleted per model."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    allowance = quotas.allowance_for(user_id)  # read before its override row goes: its rate window's key
    # Read before the transaction takes its locks (on SQLite the one write lock of the site): one Redis read.
    # A session the index lacks is void anyway once the user row is gone (chat/accounts/session_index.py).
    session_keys = session_index.session_keys(user_id)
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user_id)
        username = user.get_username()
        AuditEvent.objects.filter(actor_id=user_id).update(actor_name=f"deleted user {user_id}")
        _audit_subject_forget(user_id)
        invites = list(Invite.objects.filter(used_by_id=user_id).values_list("pk", flat=True))
        Invite.objects.filter(pk__in=invites).update(email="", note="")
        _words_erase(user, invites)
        counts: dict[str, int] = {}
        for model in (AccessAttempt, AccessFailureLog, AccessLog):
            counts[model._meta.label] = model.objects.filter(username=username).delete()[0]
        counts["sessions"] = _sessions_delete(session_keys)
        # Cascades: conversations (owner) → messages → feedback and gold answers; API keys; the Account,
        # QuotaOverride and ChatDefaults rows; admin log rows.
        _, by_model = user.delete()
        counts.update(by_model)
        # Every socket of the person re-reads its session, finds no user and closes (the one logout uses).
        transaction.on_commit(lambda: events.notify_event(user_id, events.session_ended_event("")))
        transaction.on_commit(lambda: _redis_forget(user_id, allowance))
    return counts


def _audit_subject_forget(user_id: int) -> None:
    """Rows about privileges the person was given keep their id, not their name (as rows they wrote do)."""
    rows = AuditEvent.objects.filter(
        action__in=[AuditEvent.Action.PRIVILEGE_GRANTED, AuditEvent.Action.PRIVILEGE_REMOVED], details__user_id=user_id
    )
    for event in rows:
        event.details["user"] = f"deleted user {user_id}"
        event.save(update_fields=["details"])


def _words_erase(user, invites: list[int]) -> None:
    """Inside the deletion, before the rows go: the person's words kept outside their rows. Their conversations'
    (stream logs and keys in Redis once committed, admin-log and audit texts: ``erasure.conversations_erase``),
    and the admin's log rows and audit rows that name them: their user, allowance, defaults, Account, API keys
    (named by them) and the invites they used (logged with their address) keep ids only."""
    from chat.models import Account, ApiKey, ChatDefaults, Conversation, QuotaOverride

    erasure.conversations_erase(list(Conversation.objects.filter(owner_id=user.pk).values_list("pk", flat=True)))
    erasure.admin_log_scrub(get_user_model(), [user.pk])
    erasure.admin_log_scrub(Invite, invites)
    for model in (Account, ApiKey, ChatDefaults, QuotaOverride):
        field = "owner_id" if model is ApiKey else "user_id"
        erasure.admin_log_scrub(model, model.objects.filter(**{field: user.pk}).values_list("pk", flat=True))
    erasure.audit_scrub_person(user_id=user.pk, username=user.get_username())
    erasure.pending_documents_forget(user.pk)


SESSION_CHUNK = 500  # keys bound per statement: far below what SQLite allows in one


def _sessions_delete(keys: list[str]) -> int:
    """Delete these sessions (the person's, from the index) by key, never reading another: database rows in a
    statement per chunk of keys, and a cached engine's copies. Returns the rows deleted."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    deleted = 0
    for start in range(0, len(keys), SESSION_CHUNK):
        chunk = keys[start : start + SESSION_CHUNK]
        if hasattr(store, "get_model_class"):  # db, cached_db
            deleted += store.get_model_class().objects.filter(session_key__in=chunk).delete()[0]
        if hasattr(store, "cache_key_prefix"):  # cache, cached_db: their cached copy would still sign in
            caches[settings.SESSION_CACHE_ALIAS].delete_many([store.cache_key_prefix + key for key in chunk])
    return deleted


def _redis_forget(user_id: int, allowance: quotas.Allowance) -> None:
    """A deleted person's keys in Redis: tokens per day and reserved, messages per minute, open sockets, session
    index (their replies' keys go with their conversations: ``erasure``). Each owner logs its own Redis failure;
    the keys expire by themselves. Then the embedded Redis of ``make run`` rewrites its append-only file, which
    still holds every command that wrote their words (``store.aof_rewrite``); a Redis of the operator's own is
    theirs to manage (docs/security.md)."""
    quotas.counters_forget(user_id, allowance)
    sockets.sockets_forget(user_id)
    session_index.sessions_forget(user_id)
    if settings.CHAT_REDIS_EMBEDDED:
        store.aof_rewrite()


def language_store(*, user, language: str) -> None:
    """Keep the person's language for the pages ("" for their browser's); the caller checked it is offered."""
    ChatDefaults.objects.update_or_create(user=user, defaults={"language": language})
