"""The models this deployment serves, read from the environment: ``CHAT_MODELS``, ``CHAT_MODEL_OPTIONS``,
``CHAT_DEFAULT_MODEL`` (``CHAT_MODEL`` is the one-model form).

Django-free, like ``chat/names.py``: settings and the launcher (``chatsite/stack.py``, which starts each model's
workers) read the same list before Django is set up. Who may use which model, and which have a live worker, is
``chat/replies/catalog.py``'s.

``CHAT_MODELS`` is ``name=spec`` pairs separated by commas; ``spec`` is what ``CHAT_MODEL`` takes (``bundled:…``,
a local folder, a hub id). Unset, the deployment serves ``CHAT_MODEL`` alone under its own spec as its name — the
name every earlier release used, so nothing changes for an existing deployment. ``CHAT_MODEL_OPTIONS`` is a JSON
object keyed by model name, each with any of ``OPTION_KEYS``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

# A name travels in queue names, Redis keys, URLs and JSON: letters, digits and ._:/- only (a hub id such as
# ``HuggingFaceTB/SmolLM2-135M-Instruct`` fits). ``+`` is the adapters': ``<base>+<run>`` names a training run's
# adapter, so a configured ``a+b`` would hide run b of a. Commas separate
# entries and Celery's ``-Q`` splits on them, so a name never holds one. The one-model form (``CHAT_MODEL``
# alone) is looser: its name is what earlier releases used, whatever the operator wrote.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
OPTION_KEYS = {"label", "description", "device", "precision", "dtype", "max_batch", "workers", "groups"}


class ServedModelsError(ValueError):
    """A model list that cannot work; the message is a sentence for the operator."""


@dataclass(frozen=True)
class ServedModel:
    """One served model: its name (what conversations, replies, the API and the picker say), what to load, and
    its options. ``None`` options fall back to the site-wide settings (``CHAT_DEVICE``, ``CHAT_MODEL_PRECISION``,
    ``CHAT_MAX_BATCH``, ``WORKERS``)."""

    name: str
    spec: str
    label: str
    description: str = ""
    device: str | None = None
    # inference/precision.py's values (auto, float32, bfloat16, float16, int8), checked by the settings: this module
    # may not import inference. The option ``dtype`` is its older name.
    precision: str | None = None
    max_batch: int | None = None
    workers: int | None = None  # worker processes this host runs for it (`make run`); 0: another host serves it
    groups: tuple[str, ...] = ()  # who may use it: members of any of these groups; empty: everyone
    # An adapter (a finished training run, never configuration): ``name`` is ``<base>+<adapter>``, and the base
    # model's workers write its replies, the adapter applied per request (chat/replies/catalog.py).
    base: str | None = None
    adapter: str = ""
    adapter_path: str = ""

    def host_workers(self, default: int) -> int:
        return default if self.workers is None else self.workers

    @property
    def worker_model(self) -> str:
        """Whose workers write this model's replies: its own, or for an adapter its base model's."""
        return self.base or self.name


ADAPTER_SEPARATOR = "+"


def split_adapter(name: str) -> tuple[str, str]:
    """``<base>+<adapter>`` → (base, adapter); a name without one → (name, ""). An adapter's own name holds no
    ``+`` (training runs are named with letters, digits, ``-`` and ``_``), so the last ``+`` separates them."""
    base, sep, adapter = name.rpartition(ADAPTER_SEPARATOR)
    return (base, adapter) if sep and base else (name, "")


def _int_option(name: str, key: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ServedModelsError(f"CHAT_MODEL_OPTIONS: {name}.{key} must be a whole number of at least {low}.")
    return value


def _options(name: str, raw) -> dict:
    if not isinstance(raw, Mapping):
        raise ServedModelsError(f"CHAT_MODEL_OPTIONS: the options of {name} must be a JSON object.")
    unknown = set(raw) - OPTION_KEYS
    if unknown:
        raise ServedModelsError(
            f"CHAT_MODEL_OPTIONS: {name} has unknown option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(OPTION_KEYS))}."
        )
    out = {}
    for key in ("label", "description", "device", "precision", "dtype"):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ServedModelsError(f"CHAT_MODEL_OPTIONS: {name}.{key} must be a string.")
            out[key] = raw[key]
    if "dtype" in out:  # the older name of precision, as deployments wrote it before int8 was a choice
        if "precision" in out:
            raise ServedModelsError(
                f"CHAT_MODEL_OPTIONS: {name} gives both precision and dtype (its older name): keep precision only."
            )
        out["precision"] = out.pop("dtype")
    if "max_batch" in raw:
        out["max_batch"] = _int_option(name, "max_batch", raw["max_batch"], 1)
    if "workers" in raw:
        out["workers"] = _int_option(name, "workers", raw["workers"], 0)
    if "groups" in raw:
        groups = raw["groups"]
        if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
            raise ServedModelsError(f"CHAT_MODEL_OPTIONS: {name}.groups must be a list of group names.")
        out["groups"] = tuple(groups)
    return out


def parse(models: str | None, one_model: str, options: str | Mapping | None = None) -> tuple[ServedModel, ...]:
    """The served models, in the order listed: ``models`` (``CHAT_MODELS``) or, when empty, ``one_model``
    (``CHAT_MODEL``) under its own name; ``options``: ``CHAT_MODEL_OPTIONS`` (JSON text or already parsed)."""
    if isinstance(options, str):
        try:
            options = json.loads(options) if options.strip() else {}
        except ValueError as exc:
            raise ServedModelsError(f"CHAT_MODEL_OPTIONS is not valid JSON: {exc}.") from None
    options = options or {}
    if not isinstance(options, Mapping):
        raise ServedModelsError("CHAT_MODEL_OPTIONS must be a JSON object keyed by model name.")
    pairs, one_model_form = [], not (models and models.strip())
    if not one_model_form:
        for entry in models.split(","):
            entry = entry.strip()
            if not entry:
                continue
            name, sep, spec = entry.partition("=")
            name, spec = name.strip(), spec.strip()
            if not sep or not name or not spec:
                raise ServedModelsError(
                    f"CHAT_MODELS: {entry!r} is not name=spec (e.g. smollm=bundled:smollm2-135m-instruct)."
                )
            pairs.append((name, spec))
    else:
        pairs.append((one_model, one_model))
    if not pairs:
        raise ServedModelsError("CHAT_MODELS lists no model; write name=spec pairs separated by commas, or unset it.")
    seen = set()
    for name, _ in pairs:
        if one_model_form:
            # The one-model form keeps CHAT_MODEL's value as the name every earlier release used, a local folder's
            # path (/srv/models/qwen) too; only a comma (Celery's -Q splits on it) or a name longer than the
            # database keeps cannot work.
            if "," in name or "+" in name or len(name) > 200 or not name.isprintable():
                raise ServedModelsError(
                    f"CHAT_MODEL={name!r} cannot name a model: at most 200 printable characters, no comma and no + "
                    "(it names adapters)."
                )
        elif not NAME_RE.match(name):
            raise ServedModelsError(
                f"CHAT_MODELS: the name {name!r} may hold only letters, digits and . _ : / - (at most 100; + names "
                "adapters)."
            )
        if name in seen:
            raise ServedModelsError(f"CHAT_MODELS names {name} twice.")
        seen.add(name)
    unknown = set(options) - seen
    if unknown:
        raise ServedModelsError(f"CHAT_MODEL_OPTIONS names model(s) not in CHAT_MODELS: {', '.join(sorted(unknown))}.")
    out = []
    for name, spec in pairs:
        opts = _options(name, options.get(name, {}))
        out.append(ServedModel(name=name, spec=spec, label=opts.pop("label", name), **opts))
    return tuple(out)


def default_name(served: tuple[ServedModel, ...], asked: str | None, variable: str = "CHAT_DEFAULT_MODEL") -> str:
    """``CHAT_DEFAULT_MODEL`` (or ``variable``: ``CHAT_WORKER_MODEL``), checked against the list; unset: the
    first model listed."""
    if not asked:
        return served[0].name
    if asked not in {m.name for m in served}:
        raise ServedModelsError(
            f"{variable}={asked} is not one of the served models ({', '.join(m.name for m in served)})."
        )
    return asked
