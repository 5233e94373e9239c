"""Generation parameters a user may set, and their bounds. Missing ones are filled by the worker: a chat's
temperature and top-p from ``CHAT_DEFAULT_TEMPERATURE``/``CHAT_DEFAULT_TOP_P`` (chats sample), the rest (and an API
request's all) from the model's own generation config; so only what the user chose is checked and stored here."""

from __future__ import annotations

import math

from django.conf import settings
from django.utils.translation import gettext as _

from chat.errors import ChatError, ErrorCode


def _number(name: str, value, *, integer: bool = False) -> float:
    try:  # a JSON integer may be any size: math.isfinite(10**400) raises OverflowError
        finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise ChatError(ErrorCode.INVALID_PARAMS, _("%(name)s must be a number.") % {"name": name})
    if integer and int(value) != value:
        raise ChatError(ErrorCode.INVALID_PARAMS, _("%(name)s must be a whole number.") % {"name": name})
    return int(value) if integer else float(value)


def generation_params_clean(params) -> dict:
    """Check user-supplied params; return the accepted ones. Raises ``ChatError('invalid_params')``."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ChatError(ErrorCode.INVALID_PARAMS, _("params must be an object."))
    unknown = set(params) - {"temperature", "top_p", "max_new_tokens", "stop", "seed"}
    if unknown:
        raise ChatError(ErrorCode.INVALID_PARAMS, _("Unknown parameter: %(name)s.") % {"name": sorted(unknown)[0][:40]})
    out: dict = {}
    if params.get("temperature") is not None:
        t = _number("temperature", params["temperature"])
        if not 0 <= t <= 2:
            raise ChatError(ErrorCode.INVALID_PARAMS, _("temperature must be between 0 and 2 (0 means greedy)."))
        out["temperature"] = t
    if params.get("top_p") is not None:
        p = _number("top_p", params["top_p"])
        if not 0 < p <= 1:
            raise ChatError(ErrorCode.INVALID_PARAMS, _("top_p must be greater than 0 and at most 1."))
        out["top_p"] = p
    if params.get("max_new_tokens") is not None:
        n = _number("max_new_tokens", params["max_new_tokens"], integer=True)
        if not 1 <= n <= settings.CHAT_MAX_NEW_TOKENS:
            raise ChatError(
                ErrorCode.INVALID_PARAMS,
                _("max_new_tokens must be between 1 and %(chat_max_new_tokens)s.")
                % {"chat_max_new_tokens": settings.CHAT_MAX_NEW_TOKENS},
            )
        out["max_new_tokens"] = n
    if params.get("stop") is not None:
        out["stop"] = stop_strings_clean(params["stop"])
    if params.get("seed") is not None:
        seed = _number("seed", params["seed"], integer=True)
        if not SEED_MIN <= seed <= SEED_MAX:
            raise ChatError(ErrorCode.INVALID_PARAMS, _("seed must be a 64-bit integer."))
        out["seed"] = seed
    return out


# A seed is what torch.Generator.manual_seed takes (and OpenAI's API: a 64-bit integer).
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 200


def stop_strings_clean(stop) -> list[str]:
    """Up to four strings that end the reply when it produces one (the text stops before it), as OpenAI's
    ``stop``: a string or a list of strings."""
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
        raise ChatError(ErrorCode.INVALID_PARAMS, _("stop must be a non-empty string or a list of them."))
    if len(items) > MAX_STOP_STRINGS or any(len(s) > MAX_STOP_CHARS for s in items):
        raise ChatError(
            ErrorCode.INVALID_PARAMS,
            _("stop takes at most %(max_stop_strings)s strings of at most %(max_stop_chars)s characters.")
            % {"max_stop_strings": MAX_STOP_STRINGS, "max_stop_chars": MAX_STOP_CHARS},
        )
    return items


def bounds() -> dict:
    """What the settings panel shows: each parameter's bounds and what applies when it is left empty."""
    return {
        "temperature": {
            "min": 0,
            "max": 2,
            "step": 0.05,
            "default": _("%(value)s (0 means greedy: the same reply every time)")
            % {"value": settings.CHAT_DEFAULT_TEMPERATURE},
            "placeholder": str(settings.CHAT_DEFAULT_TEMPERATURE),
        },
        "top_p": {
            "min": 0.01,
            "max": 1,
            "step": 0.01,
            "default": str(settings.CHAT_DEFAULT_TOP_P),
            "placeholder": str(settings.CHAT_DEFAULT_TOP_P),
        },
        "max_new_tokens": {
            "min": 1,
            "max": settings.CHAT_MAX_NEW_TOKENS,
            "step": 1,
            "default": _("the model's own length limit, or %(value)s tokens if it sets none")
            % {"value": settings.CHAT_DEFAULT_MAX_NEW_TOKENS},
        },
    }
