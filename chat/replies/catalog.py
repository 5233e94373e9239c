"""Which served models a person may use, which is theirs by default, and which have a live worker.

The list itself is configuration (``chat/served.py``, read into ``settings.CHAT_SERVED_MODELS``). A model with
``groups`` is open to members of any of those groups (and to superusers); one without is open to everyone.
Every path that names a model — a new conversation, a switch, Compare, the API's ``model`` — goes through
``resolve``, so an unknown model and a forbidden one are refused alike, with the same sentence: a person
cannot tell a model they may not use from one that does not exist.
"""

from __future__ import annotations

from django.conf import settings

from chat.errors import ChatError, ErrorCode
from chat.models import ChatDefaults
from chat.replies import liveness
from chat.served import ServedModel


def served() -> tuple[ServedModel, ...]:
    return settings.CHAT_SERVED_MODELS


def get(name: str) -> ServedModel | None:
    """The served model called ``name``, or None."""
    return next((m for m in served() if m.name == name), None)


def _group_names(user) -> set[str]:
    cached = getattr(user, "_chat_group_names", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True)) if user.is_authenticated else set()
        user._chat_group_names = cached  # one query per request, however many models are checked
    return cached


def may_use(user, model: ServedModel) -> bool:
    if not model.groups or getattr(user, "is_superuser", False):
        return True
    return bool(_group_names(user) & set(model.groups))


def usable(user) -> list[ServedModel]:
    """The models this person may use, in the configured order."""
    return [m for m in served() if may_use(user, m)]


def not_found(user, name: str) -> ChatError:
    names = ", ".join(m.name for m in usable(user)) or "none"
    return ChatError(
        ErrorCode.MODEL_NOT_FOUND, f"There is no model called {name!r} for you here. You may use: {names}."
    )


def resolve(user, name: str | None) -> ServedModel:
    """The model ``name`` if this person may use it (None or "": their default), else ``model_not_found``
    listing the models they may use."""
    if not name:
        return default_for(user)
    model = get(name) if isinstance(name, str) else None
    if model is None or not may_use(user, model):
        raise not_found(user, str(name)[:100])
    return model


def default_for(user) -> ServedModel:
    """A new conversation's model: the person's own default if they still may use it, else the site's default,
    else the first model open to them."""
    own = ChatDefaults.objects.filter(user=user).values_list("model_name", flat=True).first() if user.pk else None
    for name in (own, settings.CHAT_DEFAULT_MODEL):
        model = get(name) if name else None
        if model is not None and may_use(user, model):
            return model
    models = usable(user)
    if not models:
        raise ChatError(ErrorCode.MODEL_NOT_FOUND, "No model is open to you on this server; ask its staff.")
    return models[0]


def live() -> dict[str, list[str]]:
    """Every served model's live workers (an empty list: none), one Redis round trip per model."""
    return {m.name: liveness.workers_alive(m.name) for m in served()}


def models_for(user) -> list[dict]:
    """The models this person may use, as the picker and ``/v1/models`` show them: name, display name,
    description, live workers, context window (None until a worker has said), and whether it is their default.
    Two Redis round trips per model; no database query beyond the person's groups and defaults."""
    default = default_for(user).name if usable(user) else None
    out = []
    for m in usable(user):
        workers = liveness.workers_alive(m.name)
        out.append(
            {
                "name": m.name,
                "label": m.label,
                "description": m.description,
                "live": len(workers),
                "context_window": liveness.context_window(workers),
                "default": m.name == default,
            }
        )
    return out
