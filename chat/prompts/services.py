"""Writes of the prompt library: a person creates, edits and deletes their own prompts, within
``CHAT_PROMPTS_PER_PERSON`` and ``CHAT_PROMPT_MAX_CHARS``; only staff with ``chat.publish_prompt`` publish one."""

from __future__ import annotations

import re

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from chat.errors import ChatError, ErrorCode
from chat.models import Prompt, lock_person
from chat.prompts.selectors import may_publish, prompt_get_for_owner
from chat.text import clean_text

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def _checked(*, user, name: str, title: str, text: str, published: bool) -> tuple[str, str, str]:
    name = (name or "").strip().lstrip("/").lower()
    if not NAME.fullmatch(name):
        raise ChatError(
            ErrorCode.INVALID_NAME,
            _(
                "A prompt's name is 1 to 40 letters, digits, - or _, starting with a letter or digit "
                "(it is typed after /)."
            ),
        )
    text = clean_text(text or "").strip()
    if not text:
        raise ChatError(ErrorCode.EMPTY, _("A prompt needs a text."))
    if len(text) > settings.CHAT_PROMPT_MAX_CHARS:
        raise ChatError(
            ErrorCode.TOO_LONG,
            _("The prompt's text is too long: at most %(n)d characters.") % {"n": settings.CHAT_PROMPT_MAX_CHARS},
        )
    title = clean_text(title or "").strip()[:100] or name
    if published and not may_publish(user=user):
        raise ChatError(ErrorCode.FORBIDDEN, _("Only staff with the publish_prompt permission may publish prompts."))
    return name, title, text


def prompt_create(*, user, name: str, title: str, text: str, published: bool = False) -> Prompt:
    name, title, text = _checked(user=user, name=name, title=title, text=text, published=published)
    with transaction.atomic():
        # The person's row locked: two tabs saving at once cannot both pass the count.
        lock_person(user.pk)
        if Prompt.objects.filter(owner=user).count() >= settings.CHAT_PROMPTS_PER_PERSON:
            raise ChatError(
                ErrorCode.TOO_MANY_PROMPTS,
                _("You have %(n)d saved prompts, the most one person may keep: delete one first.")
                % {"n": settings.CHAT_PROMPTS_PER_PERSON},
            )
        if Prompt.objects.filter(owner=user, name=name).exists():
            raise ChatError(ErrorCode.NAME_TAKEN, _("You already have a prompt named /%(name)s.") % {"name": name})
        return Prompt.objects.create(owner=user, name=name, title=title, text=text, published=published)


def prompt_update(*, user, prompt_id: int, name: str, title: str, text: str, published: bool = False) -> Prompt:
    prompt = prompt_get_for_owner(user=user, prompt_id=prompt_id)
    if prompt.published and not may_publish(user=user):
        # What everyone sees changes only by someone who may publish.
        raise ChatError(ErrorCode.FORBIDDEN, _("This prompt is published: only staff who may publish can change it."))
    name, title, text = _checked(user=user, name=name, title=title, text=text, published=published)
    with transaction.atomic():
        if Prompt.objects.filter(owner=user, name=name).exclude(pk=prompt.pk).exists():
            raise ChatError(ErrorCode.NAME_TAKEN, _("You already have a prompt named /%(name)s.") % {"name": name})
        Prompt.objects.filter(pk=prompt.pk, owner=user).update(name=name, title=title, text=text, published=published)
    prompt.refresh_from_db()
    return prompt


def prompt_delete(*, user, prompt_id: int) -> None:
    """The owner deletes their prompt (a published one too: it is theirs)."""
    prompt = prompt_get_for_owner(user=user, prompt_id=prompt_id)
    Prompt.objects.filter(pk=prompt.pk, owner=user).delete()


def prompts_unpublish(*, prompt_ids) -> int:
    """Staff with ``chat.publish_prompt`` take published prompts back from everyone (the admin's action)."""
    return Prompt.objects.filter(pk__in=list(prompt_ids), published=True).update(published=False)
