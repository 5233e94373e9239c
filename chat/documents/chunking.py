"""An attachment's text cut into passages: pieces of about ``size`` characters, cut at paragraph breaks, then
line breaks, then spaces where they can be, never across a PDF's pages (so each passage has one page number)."""

from __future__ import annotations

import re

_BREAKS = ("\n\n", "\n", ". ", " ")


def passages(text: str, size: int, pages: list[str] | None = None) -> list[tuple[int | None, str]]:
    """``[(page or None, text), …]`` in the document's order, each stripped and non-empty."""
    out: list[tuple[int | None, str]] = []
    sources = [(number, page) for number, page in enumerate(pages, start=1)] if pages else [(None, text)]
    for number, body in sources:
        out.extend((number, piece) for piece in split(body, size))
    return out


def split(text: str, size: int) -> list[str]:
    text = re.sub(r"[ \t]+\n", "\n", text).strip()
    pieces = []
    while len(text) > size:
        cut = -1
        for mark in _BREAKS:
            cut = text.rfind(mark, size // 2, size)
            if cut != -1:
                cut += len(mark)
                break
        if cut == -1:
            cut = size
        piece, text = text[:cut].strip(), text[cut:].strip()
        if piece:
            pieces.append(piece)
    if text:
        pieces.append(text)
    return pieces
