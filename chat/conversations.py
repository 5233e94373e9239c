"""Writes about whole conversations (chat/services.py holds the writes about messages): settings, the person's
defaults for new conversations, titles, deletion. Keyword-only and atomic; frames go out on commit to every tab
of the owner, so a rename or a deletion in one tab shows in the others.
"""
from __future__ import annotations

import logging

from django.db import transaction

from chat import events, selectors
from chat.errors import ChatError
from chat.models import ChatDefaults, Conversation, Message
from chat.params import generation_params_clean
from chat.services import TITLE_CHARS, clean_text, message_finish, title_from

log = logging.getLogger(__name__)

SYSTEM_PROMPT_CHARS = 8000


def _system_prompt(value) -> str:
    text = clean_text("" if value is None else value).strip()
    if len(text) > SYSTEM_PROMPT_CHARS:
        raise ChatError("too_long", f"The system prompt is too long: at most {SYSTEM_PROMPT_CHARS} characters.")
    return text


def conversation_settings_set(*, user, conversation_id: int | None, system_prompt, params) -> dict:
    """Set a conversation's system prompt and generation params (they apply to its next reply), or, with no
    conversation, the person's defaults that new conversations start from. Returns what was stored."""
    text = _system_prompt(system_prompt)
    clean = generation_params_clean(params)
    if "seed" in clean:
        # Settings apply to every later reply of the conversation, Regenerate's included: a seed kept there
        # would make each Regenerate write the same reply again.
        raise ChatError("invalid_params", "A seed belongs to one request, not to a conversation's settings: "
                                          "kept there, every Regenerate would give the same reply again.")
    with transaction.atomic():
        if conversation_id is None:
            ChatDefaults.objects.update_or_create(user=user, defaults={"system_prompt": text, "params": clean})
        else:
            conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
            # update(): settings are not activity, so the conversation keeps its place in the sidebar.
            Conversation.objects.filter(pk=conversation.pk).update(system_prompt=text, params=clean)
        transaction.on_commit(lambda: events.notify(user.id, events.settings_frame(conversation_id, text, clean)))
    return {"system_prompt": text, "params": clean}


def conversation_rename(*, user, conversation_id: int, title) -> Conversation:
    """Give a conversation the person's own title (the model's automatic title never overwrites it)."""
    text = " ".join(clean_text(title).split())
    if not text:
        raise ChatError("empty", "Type a title first.")
    if len(text) > TITLE_CHARS:
        raise ChatError("too_long", f"The title is too long: at most {TITLE_CHARS} characters.")
    with transaction.atomic():
        conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
        Conversation.objects.filter(pk=conversation.pk).update(title=text)
        conversation.title = text
        transaction.on_commit(lambda: events.notify(user.id, events.conversation_frame(conversation)))
    return conversation


def conversation_delete(*, user, conversation_id: int) -> None:
    """Delete a conversation and everything in it. A reply still being written is stopped first: a queued one
    ends now, a streaming one is told to stop (its worker finds the rows gone and ends quietly)."""
    with transaction.atomic():
        conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
        active = list(Message.objects.filter(conversation=conversation, status__in=Message.ACTIVE_STATUSES)
                      .values_list("pk", flat=True))
        for message_id in active:
            message_finish(message_id=message_id, content=None, status=Message.Status.STOPPED,
                           finish_reason=Message.FinishReason.CANCELLED)
        conversation.delete()

        def after_commit():
            for message_id in active:
                events.broadcast_cancel_sync(message_id)
            events.notify(user.id, events.deleted_frame(conversation_id))

        transaction.on_commit(after_commit)


def conversation_title_generated(*, conversation_id: int, title: str, replacing: str) -> bool:
    """Worker: store the model's short title unless the conversation was renamed (or deleted) meanwhile. An
    unusable title keeps the first words. True when stored; the owner's tabs get a ``conversation`` frame."""
    text = " ".join(clean_text(title).split()).strip(" \"'`*#.")
    if not text:
        return False
    if len(text) > TITLE_CHARS:
        text = title_from(text)
    with transaction.atomic():
        if not Conversation.objects.filter(pk=conversation_id, title=replacing).update(title=text):
            return False
        conversation = Conversation.objects.get(pk=conversation_id)
        transaction.on_commit(lambda: events.notify(conversation.owner_id, events.conversation_frame(conversation)))
    return True
