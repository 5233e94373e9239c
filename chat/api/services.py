"""The API's writes: a completion request stored as a conversation with a queued reply (the same limits and
the same reply life as the chat page), and API keys (create, revoke, record a use). Only a key's SHA-256 is
stored; the key itself is shown once.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.conversations.params import generation_params_clean
from chat.errors import ChatError, ErrorCode
from chat.models import ApiKey, Conversation, Message
from chat.replies import admission, catalog
from chat.replies import services as reply_services
from chat.text import clean_text, title_from

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
        raise ChatError(ErrorCode.INVALID_NAME, _("Give the key a name, so you can tell it apart later."))
    if len(name) > API_KEY_NAME_CHARS:
        raise ChatError(
            ErrorCode.INVALID_NAME,
            _("The name is too long: at most %(api_key_name_chars)s characters.")
            % {"api_key_name_chars": API_KEY_NAME_CHARS},
        )
    if ApiKey.objects.filter(owner=owner, revoked_at__isnull=True).count() >= API_KEYS_PER_PERSON:
        raise ChatError(
            ErrorCode.TOO_MANY_KEYS,
            _("You already have %(api_keys_per_person)s keys in use; revoke one you no longer need first.")
            % {"api_keys_per_person": API_KEYS_PER_PERSON},
        )
    prefix = secrets.token_hex(API_KEY_PREFIX_CHARS // 2)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        owner=owner,
        name=name,
        prefix=prefix,
        secret_hash=api_key_secret_hash(secret),
        store_conversations=bool(store_conversations),
    )
    return NewApiKey(key, f"{API_KEY_START}{prefix}-{secret}")


def api_key_revoke(*, key_id: int, owner=None) -> ApiKey:
    """Revoke a key (its owner's, or any key when ``owner`` is None: staff). Revoking twice keeps the first
    time. A key is checked once per request, so the replies it started and that are still queued or streaming
    are stopped too: a leaked key, revoked, must not go on generating (and charging its owner)."""
    keys = ApiKey.objects.all() if owner is None else ApiKey.objects.filter(owner=owner)
    try:
        key = keys.get(pk=int(key_id))
    except (ApiKey.DoesNotExist, TypeError, ValueError, OverflowError):
        raise ChatError(ErrorCode.NOT_FOUND, _("No such key, or it is not yours.")) from None
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    for reply in Message.objects.filter(
        conversation__api_key=key,
        role=Message.Role.ASSISTANT,
        status__in=(Message.Status.QUEUED, Message.Status.STREAMING),
    ):
        reply_services.reply_stop(message=reply)
    key.refresh_from_db()
    return key


def api_key_touch(*, key: ApiKey) -> None:
    """Record that a key was used; at most one write a minute per key, not one per request."""
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() >= 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


log = logging.getLogger(__name__)


# --- the OpenAI-compatible API (chat/api/) -----------------------------------------------------------------
def api_completion_create(
    *, key: ApiKey, turns: list[dict], params: dict, end_user: str = "", model: str | None = None
) -> Message:
    """One API request as a new conversation of the key's owner: its system prompt, its turns as stored
    messages, and a queued reply, dispatched to the same workers under the same per-person limits as the
    chat's (approval, replies at once, tokens today, messages a minute). ``turns`` are ``{"role", "content"}``
    with role system, user or assistant, the last a user's."""
    user = key.owner
    system = "\n\n".join(clean_text(t["content"]) for t in turns if t["role"] == "system")
    chat_turns = [{"role": t["role"], "content": clean_text(t["content"])} for t in turns if t["role"] != "system"]
    if not chat_turns or chat_turns[-1]["role"] != Message.Role.USER or not chat_turns[-1]["content"].strip():
        raise ChatError(ErrorCode.EMPTY, _("The last message must be a user's, with some text."))
    if any(len(t["content"]) > settings.CHAT_MAX_MESSAGE_CHARS for t in chat_turns + [{"content": system}]):
        raise ChatError(
            ErrorCode.TOO_LONG,
            _("A message is too long: at most %(chat_max_message_chars)s characters.")
            % {"chat_max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS},
        )
    total = len(system) + sum(len(t["content"]) for t in chat_turns)
    if total > settings.CHAT_API_MAX_REQUEST_CHARS:
        raise ChatError(
            ErrorCode.TOO_LONG,
            _(
                "The messages are too long together: at "
                "most %(chat_api_max_request_chars)s characters in one request, not %(total)s."
            )
            % {"chat_api_max_request_chars": settings.CHAT_API_MAX_REQUEST_CHARS, "total": total},
        )
    admission.require_approved(user)
    served = catalog.resolve(user, model).name
    clean_params = generation_params_clean(params)
    size = admission.reply_size(params=clean_params, system_prompt=system, texts=[t["content"] for t in chat_turns])
    with admission.admitted(user.pk, size, served) as admitted, transaction.atomic():
        # The key was checked when the request came; locked and checked again here, a revoke running now waits
        # for this reply to be stored and then stops it with the key's others (api_keys.api_key_revoke).
        if not ApiKey.objects.select_for_update().filter(pk=key.pk, revoked_at__isnull=True).exists():
            raise ChatError(ErrorCode.KEY_REVOKED, _("This API key has been revoked."))
        admission.require_capacity(user.pk, admitted.allowance)
        kept = key.store_conversations
        conversation = Conversation.objects.create(
            owner=user,
            title=title_from(chat_turns[-1]["content"]) if kept else "",
            system_prompt=system,
            model_name=served,
            source=Conversation.Source.API,
            api_key=key,
            api_key_name=key.name,
            api_user=clean_text(end_user)[:256],
            content_kept=kept,
        )
        parent = None
        for turn in chat_turns:
            parent = Message.objects.create(
                conversation=conversation,
                parent=parent,
                role=turn["role"],
                content=turn["content"],
                status=Message.Status.COMPLETE,
                supplied=turn["role"] == Message.Role.ASSISTANT,
            )
        reply = reply_services.reply_create(
            conversation=conversation, parent=parent, params=clean_params, reservation=admitted.reservation
        )
        transaction.on_commit(lambda: reply_services.reply_dispatch(message_id=reply.id, model=served))
    return reply
