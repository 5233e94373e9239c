"""A conversation's settings — its system prompt, generation parameters and model, which apply from its next
reply — and, with no conversation, the person's defaults that new conversations start from (the chat page's
settings panel)."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext

from chat import events
from chat.conversations import selectors
from chat.conversations.params import generation_params_clean
from chat.errors import ChatError, ErrorCode
from chat.experiments import assignment
from chat.models import ChatDefaults, Conversation
from chat.replies import catalog
from chat.text import clean_text

SYSTEM_PROMPT_CHARS = 8000


def _system_prompt(value) -> str:
    text = clean_text("" if value is None else value).strip()
    if len(text) > SYSTEM_PROMPT_CHARS:
        raise ChatError(
            ErrorCode.TOO_LONG,
            gettext("The system prompt is too long: at most %(system_prompt_chars)s characters.")
            % {"system_prompt_chars": SYSTEM_PROMPT_CHARS},
        )
    return text


def conversation_settings_set(*, user, conversation_id: int | None, system_prompt, params, model=None) -> dict:
    """Set a conversation's system prompt, generation params and (``model``, when given) model — they apply to
    its next reply, whose prompt then goes through the new model's template and window — or, with no
    conversation, the person's defaults that new conversations start from. Returns what was stored."""
    text = _system_prompt(system_prompt)
    clean = generation_params_clean(params)
    chosen = catalog.resolve(user, model).name if model else None
    if chosen and conversation_id is not None:
        # The page sends the model with every save; the name it shows is not a switch (an A/B candidate arm's
        # conversation shows the control's name and must keep its candidate).
        current = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
        if chosen == assignment.shown_model(current):
            chosen = None
    if "seed" in clean:
        # Settings apply to every later reply of the conversation, Regenerate's included: a seed kept there
        # would make each Regenerate write the same reply again.
        raise ChatError(
            ErrorCode.INVALID_PARAMS,
            gettext(
                "A seed belongs to one request, not to a conversation's settings: "
                "kept there, every Regenerate would give the same reply again."
            ),
        )
    with transaction.atomic():
        fields = {"system_prompt": text, "params": clean}
        if conversation_id is None:
            if chosen:
                fields["model_name"] = chosen
            row, _ = ChatDefaults.objects.update_or_create(user=user, defaults=fields)
            stored = row.model_name or catalog.default_for(user).name
        else:
            conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
            if chosen:
                fields["model_name"] = chosen
            # update(): settings are not activity, so the conversation keeps its place in the sidebar.
            Conversation.objects.filter(pk=conversation.pk).update(**fields)
            stored = chosen or assignment.shown_model(conversation)
        transaction.on_commit(
            lambda: events.notify(user.id, events.settings_frame(conversation_id, text, clean, stored))
        )
    return {"system_prompt": text, "params": clean, "model": stored}
