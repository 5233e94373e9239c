"""Writes about API keys (``chat/services.py`` holds the writes about messages, an API request's included):
create, revoke, record a use. Only a key's SHA-256 is stored; the key itself is shown once."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.utils import timezone

from chat.errors import ChatError
from chat.models import ApiKey, Message
from chat.services import clean_text, reply_stop

API_KEY_START = "sk-"
API_KEY_PREFIX_CHARS = 12
API_KEY_NAME_CHARS = 100


def api_key_secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class NewApiKey:
    key: ApiKey
    plaintext: str  # shown once, never stored


API_KEYS_PER_PERSON = 20  # keys in use at once: plenty for a person's programs, never an unbounded table


def api_key_create(*, owner, name: str, store_conversations: bool = True) -> NewApiKey:
    """A new random key for ``owner``: ``sk-<prefix>-<secret>``. Only the secret's hash is stored."""
    name = clean_text(name).strip()
    if not name:
        raise ChatError("invalid_name", "Give the key a name, so you can tell it apart later.")
    if len(name) > API_KEY_NAME_CHARS:
        raise ChatError("invalid_name", f"The name is too long: at most {API_KEY_NAME_CHARS} characters.")
    if ApiKey.objects.filter(owner=owner, revoked_at__isnull=True).count() >= API_KEYS_PER_PERSON:
        raise ChatError("too_many_keys", f"You already have {API_KEYS_PER_PERSON} keys in use; revoke one you no "
                                         "longer need first.")
    prefix = secrets.token_hex(API_KEY_PREFIX_CHARS // 2)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(owner=owner, name=name, prefix=prefix, secret_hash=api_key_secret_hash(secret),
                                store_conversations=bool(store_conversations))
    return NewApiKey(key, f"{API_KEY_START}{prefix}-{secret}")


def api_key_revoke(*, key_id: int, owner=None) -> ApiKey:
    """Revoke a key (its owner's, or any key when ``owner`` is None: staff). Revoking twice keeps the first
    time. A key is checked once per request, so the replies it started and that are still queued or streaming
    are stopped too: a leaked key, revoked, must not go on generating (and charging its owner)."""
    keys = ApiKey.objects.all() if owner is None else ApiKey.objects.filter(owner=owner)
    try:
        key = keys.get(pk=int(key_id))
    except (ApiKey.DoesNotExist, TypeError, ValueError, OverflowError):
        raise ChatError("not_found", "No such key, or it is not yours.") from None
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    for reply in Message.objects.filter(conversation__api_key=key, role=Message.Role.ASSISTANT,
                                        status__in=(Message.Status.QUEUED, Message.Status.STREAMING)):
        reply_stop(message=reply)
    key.refresh_from_db()
    return key


def api_key_touch(*, key: ApiKey) -> None:
    """Record that a key was used; at most one write a minute per key, not one per request."""
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() >= 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
