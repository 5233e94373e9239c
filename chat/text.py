"""Writes. Keyword-only and atomic; channel frames and tasks fire on commit, in order, so a client always
sees the stored message before any delta of its reply. No network call inside a write transaction: the
worker check runs before it (a SQLite writer holds the whole database's lock).

``reply_finish`` is the one place a reply ends — the worker's end, Stop, the sweep and a failed dispatch all
go through it — and it alone sends ``done``. ``reply_stop`` is the one way a reply is stopped, by its owner or
by a reviewer."""

from __future__ import annotations

import logging
import re

from chat.errors import ChatError, ErrorCode

log = logging.getLogger(__name__)


# NUL and other C0 controls (but tab and newlines), DEL, and lone surrogates that no database can store.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


TITLE_CHARS = 60


def clean_text(text) -> str:
    """Text safe to store: unsafe characters dropped. HTML stays as typed; pages escape it."""
    if not isinstance(text, str):
        raise ChatError(ErrorCode.INVALID_CONTENT, "content must be text.")
    return _UNSAFE_CHARS.sub("", text)


def title_from(text: str) -> str:
    """The first words of a text, on one line, at most TITLE_CHARS long."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
