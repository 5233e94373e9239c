"""Reads of the prompt library, scoped to the person asking: their own prompts, and the published ones of others."""

from __future__ import annotations

from django.utils.translation import gettext as _

from chat.errors import ChatError, ErrorCode
from chat.models import Prompt

PUBLISH_PERMISSION = "chat.publish_prompt"


def may_publish(*, user) -> bool:
    """Active staff with ``chat.publish_prompt`` (given in the admin like every privilege, audited)."""
    return bool(user.is_active and user.is_staff and user.has_perm(PUBLISH_PERMISSION))


def prompts_of(*, user) -> list[Prompt]:
    """The person's own prompts, by name."""
    return list(Prompt.objects.filter(owner=user).order_by("name"))


def prompt_get_for_owner(*, user, prompt_id) -> Prompt:
    """One of the person's own prompts; anyone else's, or none, is ``not_found`` alike."""
    prompt = Prompt.objects.filter(owner=user, pk=prompt_id).first() if isinstance(prompt_id, int) else None
    if prompt is None:
        raise ChatError(ErrorCode.NOT_FOUND, _("No such prompt, or it is not yours."))
    return prompt


def shared_prompts_for(*, user) -> list[Prompt]:
    """Published prompts of other people, by name (the oldest first when two share a name)."""
    return list(
        Prompt.objects.filter(published=True).exclude(owner=user).select_related("owner").order_by("name", "pk")
    )


def prompts_for_input(*, user) -> list[dict]:
    """What ``/`` offers this person in the chat input: their own prompts and the published ones, by name. A
    name is offered once: their own prompt wins over a published one of the same name, and of two published
    ones the older wins."""
    out: dict[str, dict] = {}
    for p in prompts_of(user=user):
        out[p.name] = {"name": p.name, "title": p.title, "text": p.text, "shared": p.published, "mine": True}
    for p in shared_prompts_for(user=user):
        out.setdefault(p.name, {"name": p.name, "title": p.title, "text": p.text, "shared": True, "mine": False})
    return [out[name] for name in sorted(out)]
