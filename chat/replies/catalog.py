"""Which served models a person may use, which is theirs by default, and which have a live worker.

The list itself is configuration (``chat/served.py``, read into ``settings.CHAT_SERVED_MODELS``). A model with
``groups`` is open to members of any of those groups (and to superusers); one without is open to everyone.
Every path that names a model — a new conversation, a switch, Compare, the API's ``model`` — goes through
``resolve``, so an unknown model and a forbidden one are refused alike, with the same sentence: a person
cannot tell a model they may not use from one that does not exist.
"""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from django.utils.translation import gettext as _

from chat.accounts.selectors import may_train
from chat.errors import ChatError, ErrorCode
from chat.models import ChatDefaults, SiteDefault, TrainingRun
from chat.replies import liveness
from chat.served import ADAPTER_SEPARATOR, ServedModel, split_adapter


def served() -> tuple[ServedModel, ...]:
    """The configured models (``CHAT_MODELS``); adapters are not among them (``adapters``)."""
    return settings.CHAT_SERVED_MODELS


def _configured(name: str) -> ServedModel | None:
    return next((m for m in served() if m.name == name), None)


def _as_adapter(run: TrainingRun, base: ServedModel) -> ServedModel:
    return replace(
        base,
        name=run.served_name,
        label=f"{base.label} + {run.name}",
        description=f"{base.label} with the adapter {run.name}, trained on reviewed conversations",
        workers=0,
        base=base.name,
        adapter=run.name,
        adapter_path=run.adapter_path,
    )


def adapters() -> list[ServedModel]:
    """Every finished training run of a configured model, as the model name it is served under (one query)."""
    out = []
    for run in TrainingRun.objects.filter(state=TrainingRun.State.DONE).order_by("created_at", "id"):
        base = _configured(run.base_model)
        if base is not None:
            out.append(_as_adapter(run, base))
    return out


def get(name: str) -> ServedModel | None:
    """The served model called ``name`` (a configured one, or ``<base>+<adapter>`` of a finished run), or None.
    A configured name costs no query."""
    model = _configured(name)
    if model is not None or ADAPTER_SEPARATOR not in name:
        return model
    base_name, adapter = split_adapter(name)
    base = _configured(base_name)
    if base is None:
        return None
    run = TrainingRun.objects.filter(name=adapter, base_model=base_name, state=TrainingRun.State.DONE).first()
    return _as_adapter(run, base) if run is not None else None


def worker_model(name: str) -> str:
    """The model whose workers write replies of ``name``: an adapter's base, else the name itself (no query)."""
    if _configured(name) is not None:
        return name
    base, adapter = split_adapter(name)
    return base if adapter and _configured(base) is not None else name


def site_default() -> str:
    """The default model: the one staff last promoted while it is still served, else ``CHAT_DEFAULT_MODEL``."""
    promoted = SiteDefault.objects.values_list("model_name", flat=True).first()
    return promoted if promoted and get(promoted) is not None else settings.CHAT_DEFAULT_MODEL


def _group_names(user) -> set[str]:
    cached = getattr(user, "_chat_group_names", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True)) if user.is_authenticated else set()
        user._chat_group_names = cached  # one query per request, however many models are checked
    return cached


def may_use(user, model: ServedModel, default: str | None = None) -> bool:
    """Whether this person may pick ``model``: its groups (an adapter's are its base's), and for an adapter also
    the permission to try adapters (``chat.train_model``) unless it is the promoted default (``default``, else
    read)."""
    if model.adapter and not getattr(user, "is_superuser", False):
        if not may_train(user=user) and model.name != (default or site_default()):
            return False
    if not model.groups or getattr(user, "is_superuser", False):
        return True
    return bool(_group_names(user) & set(model.groups))


def usable(user) -> list[ServedModel]:
    """The models this person may use: the configured ones, then the adapters open to them."""
    default = site_default()
    models = list(served())
    if may_train(user=user) or ADAPTER_SEPARATOR in default:
        models += adapters()  # a query only where an adapter may be open to them
    return [m for m in models if may_use(user, m, default)]


def not_found(user, name: str) -> ChatError:
    names = ", ".join(m.name for m in usable(user)) or "none"
    return ChatError(
        ErrorCode.MODEL_NOT_FOUND,
        _("There is no model called %(name)r for you here. You may use: %(names)s.") % {"name": name, "names": names},
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
    for name in (own, site_default()):
        model = get(name) if name else None
        if model is not None and may_use(user, model):
            return model
    models = usable(user)
    if not models:
        raise ChatError(ErrorCode.MODEL_NOT_FOUND, _("No model is open to you on this server; ask its staff."))
    return models[0]


def live() -> dict[str, list[str]]:
    """Every configured model's live workers (an empty list: none), one Redis round trip per model."""
    return {m.name: liveness.workers_alive(m.name) for m in served()}


def models_for(user) -> list[dict]:
    """The models this person may use, as the picker and ``/v1/models`` show them: name, display name,
    description, live workers, context window (None until a worker has said), and whether it is their default.
    Two Redis round trips per model; a few queries (the promoted default, their defaults, their groups and
    permissions, and the finished adapters where they may try them)."""
    models = usable(user)
    default = default_for(user).name if models else None
    out = []
    for m in models:
        workers = liveness.workers_alive(m.worker_model)
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
