"""Text as it is stored: unsafe characters dropped (``clean_text``), and the first words of a message as a
title (``title_from``).
"""

from __future__ import annotations

import logging
import re

from django.utils.translation import gettext as _

from chat.errors import ChatError, ErrorCode

log = logging.getLogger(__name__)


# NUL and other C0 controls (but tab and newlines), DEL, and lone surrogates that no database can store.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


TITLE_CHARS = 60


def clean_text(text) -> str:
    """Text safe to store: unsafe characters dropped. HTML stays as typed; pages escape it."""
    if not isinstance(text, str):
        raise ChatError(ErrorCode.INVALID_CONTENT, _("content must be text."))
    return _UNSAFE_CHARS.sub("", text)


def title_from(text: str) -> str:
    """The first words of a text, on one line, at most TITLE_CHARS long."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
