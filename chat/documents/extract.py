"""The text of an uploaded file, read by kept libraries and never executed: plain text, Markdown and code as
UTF-8, PDF with pypdf, Word (.docx) with python-docx. Every bound is checked before the work it bounds: the size
before the file is read (the view), a .docx's unzipped size before python-docx opens it (a zip bomb never
inflates), a PDF's page count before any page is extracted (a 10,000-page PDF is refused from its page tree),
and the text's length and the time spent while extracting. Whatever a library raises on a malformed file
becomes a sentence with a stable code, never an error page.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
import zipfile

from django.utils.translation import gettext as _

from chat.errors import ChatError, ErrorCode
from chat.text import clean_text

# Read as UTF-8 text: prose, Markdown and the usual source and data files (by extension; the bytes must still be
# text). Nothing in them is run, only quoted into the prompt.
TEXT_EXTENSIONS = frozenset(
    ".txt .text .md .markdown .rst .csv .tsv .log .json .jsonl .yaml .yml .toml .ini .cfg .conf .xml .html .htm "
    ".css .scss .js .mjs .cjs .ts .tsx .jsx .py .pyi .rb .php .java .kt .kts .scala .go .rs .c .h .cc .cpp .hpp "
    ".cs .swift .m .sh .bash .zsh .ps1 .sql .r .jl .lua .pl .hs .ex .exs .erl .clj .dart .vue .svelte .tex "
    ".gradle .properties .env .dockerfile .makefile".split()
)
TEXT_NAMES = frozenset({"dockerfile", "makefile", "readme", "license"})
PDF, DOCX, TEXT = "pdf", "docx", "text"
# A page's unpacked content stream: text pages hold tens of KB; pypdf reads about a MB a second here.
PAGE_CONTENT_BYTES = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Limits:
    max_pages: int
    max_chars: int
    max_unzipped_bytes: int
    max_seconds: float


@dataclasses.dataclass
class Extracted:
    kind: str
    text: str
    pages: list[str] | None  # a PDF's text page by page (its passages keep their page); None for the others


def kind_of(name: str) -> str:
    """The kind a file is read as, from its name; refuses what none of the readers takes."""
    base = os.path.basename(name).lower()
    ext = os.path.splitext(base)[1]
    if ext == ".pdf":
        return PDF
    if ext == ".docx":
        return DOCX
    if ext in TEXT_EXTENSIONS or base in TEXT_NAMES:
        return TEXT
    raise ChatError(
        ErrorCode.FILE_UNSUPPORTED,
        _("This kind of file cannot be attached: attach plain text, Markdown, code, PDF or Word (.docx) files."),
    )


def extract(name: str, data: bytes, limits: Limits) -> Extracted:
    kind = kind_of(name)
    if kind == PDF:
        pages = _pdf_pages(data, limits)
        text = "\n\n".join(pages)
    elif kind == DOCX:
        pages, text = None, _docx_text(data, limits)
    else:
        pages, text = None, _plain_text(data)
    text = clean_text(text)
    if pages is not None:
        pages = [clean_text(p) for p in pages]
    if len(text) > limits.max_chars:
        raise ChatError(
            ErrorCode.FILE_TOO_LARGE,
            _("This file holds too much text: at most %(chars)s characters.") % {"chars": f"{limits.max_chars:,}"},
        )
    if not text.strip():
        raise ChatError(
            ErrorCode.FILE_NO_TEXT,
            _("No text could be found in this file (a scanned PDF holds pictures of text, which cannot be read)."),
        )
    return Extracted(kind=kind, text=text, pages=pages)


def _unreadable(what: str) -> ChatError:
    return ChatError(
        ErrorCode.FILE_UNREADABLE,
        _("This file could not be read as %(what)s: it is damaged or not one.") % {"what": what},
    )


def _plain_text(data: bytes) -> str:
    if b"\x00" in data[:65536]:  # binary: UTF-16 text or not text at all
        raise _unreadable(_("text"))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _unreadable(_("UTF-8 text")) from None


def _pdf_pages(data: bytes, limits: Limits) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # Encrypted for permissions only (an empty user password) still opens; a password-protected one not.
            try:
                opened = reader.decrypt("")
            except Exception:
                opened = 0
            if not opened:
                raise ChatError(
                    ErrorCode.FILE_ENCRYPTED,
                    _("This PDF is protected by a password: remove the password and attach it again."),
                )
        # The page tree's own count, read before a single page is: a file claiming more pages than allowed is
        # refused here. A count that lies low is caught page by page below.
        declared = _declared_pages(reader)
        if declared > limits.max_pages:
            raise _too_many_pages(limits)
        started = time.monotonic()
        pages, chars = [], 0
        for number, page in enumerate(reader.pages, start=1):
            if number > limits.max_pages:
                raise _too_many_pages(limits)
            # One page's drawing instructions, unpacked, before they are read: extracting has no clock of its own,
            # so a page of millions of operators (seconds each MB) is refused here rather than read.
            contents = page.get_contents()
            if contents is not None and len(contents.get_data()) > PAGE_CONTENT_BYTES:
                raise ChatError(
                    ErrorCode.FILE_UNREADABLE,
                    _("Page %(page)s of this PDF is too complex to read; attach its text instead.") % {"page": number},
                )
            text = page.extract_text() or ""
            chars += len(text)
            if chars > limits.max_chars:
                raise ChatError(
                    ErrorCode.FILE_TOO_LARGE,
                    _("This file holds too much text: at most %(chars)s characters.")
                    % {"chars": f"{limits.max_chars:,}"},
                )
            if time.monotonic() - started > limits.max_seconds:
                raise ChatError(
                    ErrorCode.FILE_UNREADABLE,
                    _("Reading this PDF takes too long; attach a smaller part of it, or its text."),
                )
            pages.append(text)
        return pages
    except ChatError:
        raise
    except (PdfReadError, Exception):  # pypdf raises many kinds on a malformed file (ValueError, KeyError, …)
        raise _unreadable("PDF") from None


def _declared_pages(reader) -> int:
    try:
        count = reader.trailer["/Root"]["/Pages"]["/Count"]
        return int(count)
    except Exception:
        return 0  # no usable count: the page-by-page bound still holds


def _too_many_pages(limits: Limits) -> ChatError:
    return ChatError(
        ErrorCode.FILE_TOO_MANY_PAGES,
        _("This PDF has too many pages: at most %(pages)s.") % {"pages": limits.max_pages},
    )


def _docx_text(data: bytes, limits: Limits) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise _unreadable(_("a Word document")) from None
    # What the archive would inflate to, from its directory, before anything is inflated: a zip bomb stops here.
    # (zipfile never inflates a member past its declared size, so a directory that lies cannot get round it.)
    if len(members) > 2000 or sum(m.file_size for m in members) > limits.max_unzipped_bytes:
        raise ChatError(
            ErrorCode.FILE_TOO_LARGE,
            _("This Word document unpacks to more than %(mb)s MB; attach a smaller one.")
            % {"mb": limits.max_unzipped_bytes // (1024 * 1024)},
        )
    if "word/document.xml" not in {m.filename for m in members}:
        raise _unreadable(_("a Word document"))
    try:
        import docx
        from docx.oxml.ns import qn

        document = docx.Document(io.BytesIO(data))
        # The body's XML walked once, in order, on the clock: python-docx's table API (row.cells) is quadratic in
        # a table's size, so a small file holding a huge empty table took seconds with no bound but its size.
        started, parts = time.monotonic(), []
        paragraph, row, cell, text = qn("w:p"), qn("w:tr"), qn("w:tc"), qn("w:t")
        for n, child in enumerate(document.element.body.iter(paragraph, row)):
            if n % 256 == 0 and time.monotonic() - started > limits.max_seconds:
                raise ChatError(
                    ErrorCode.FILE_UNREADABLE,
                    _("Reading this Word document takes too long; attach a smaller part of it, or its text."),
                )
            if child.tag == row:
                cells = ("".join(t.text or "" for t in c.iter(text)) for c in child.iter(cell))
                parts.append("\t".join(cells))
            elif not any(a.tag == row for a in child.iterancestors(row)):  # a cell's paragraphs are in its row
                parts.append("".join(t.text or "" for t in child.iter(text)))
    except ChatError:
        raise
    except Exception:  # python-docx and lxml raise many kinds on a malformed part
        raise _unreadable(_("a Word document")) from None
    return "\n".join(parts)
