"""The text of an uploaded file, read by kept libraries and never executed: plain text, Markdown and code as
UTF-8, PDF with pypdf, Word (.docx) with python-docx. Every bound is checked before the work it bounds: the size
before the file is read (the view), a .docx's unzipped size before python-docx opens it (a zip bomb never
inflates), a PDF's page count before any page is extracted (a 10,000-page PDF is refused from its page tree),
and the text's length and the time spent while extracting — inside a PDF page operator by operator, and
through a Word body element by element. Whatever a library raises on a malformed file
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
        watch = _PageWatch(started + limits.max_seconds, limits.max_chars)
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
            watch.chars = chars
            try:
                text = page.extract_text(visitor_operand_before=watch.operator, visitor_text=watch.text) or ""
            except _PastBound as past:
                raise past.refusal(limits) from None
            if watch.past:  # raised inside a form, whose reading pypdf wraps in its own except (and goes on)
                raise _PastBound(watch.past).refusal(limits)
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


class _PastBound(Exception):
    def __init__(self, what: str):
        self.what = what

    def refusal(self, limits: Limits) -> ChatError:
        if self.what == "chars":
            return ChatError(
                ErrorCode.FILE_TOO_LARGE,
                _("This file holds too much text: at most %(chars)s characters.") % {"chars": f"{limits.max_chars:,}"},
            )
        return ChatError(
            ErrorCode.FILE_UNREADABLE, _("Reading this PDF takes too long; attach a smaller part of it, or its text.")
        )


class _PageWatch:
    """The clock and the character count *inside* a page's extraction, through pypdf's visitor callbacks: a page
    may draw the same form (an XObject) thousands of times, each one's content read again, so a page's own
    content stream can be tiny while reading it takes hours. Checked every operator (a clock read is ~50 ns, an
    operator's interpretation microseconds)."""

    def __init__(self, deadline: float, max_chars: int):
        self.deadline, self.max_chars, self.chars = deadline, max_chars, 0
        self.past = ""  # which bound was passed: kept, since pypdf swallows what is raised inside a form

    def operator(self, *args) -> None:
        if self.past or time.monotonic() > self.deadline:
            self.past = self.past or "time"
            raise _PastBound(self.past)

    def text(self, text, *args) -> None:
        self.chars += len(text or "")
        if self.past or self.chars > self.max_chars:
            self.past = self.past or "chars"
            raise _PastBound(self.past)


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
        return _body_text(document.element.body, limits, qn)
    except ChatError:
        raise
    except Exception:  # python-docx and lxml raise many kinds on a malformed part
        raise _unreadable(_("a Word document")) from None


def _body_text(body, limits: Limits, qn) -> str:
    """A Word body's text in order, each piece of text read once: paragraphs a line each, a table row its cells
    joined by tabs (a cell's paragraphs by spaces; a table inside a cell is that cell's text). One walk of the
    XML, start and end of each element, on the clock and counting characters as it goes: python-docx's table API
    (row.cells) is quadratic in a table's size, and reading each cell's text under every row that holds it was
    quadratic in tables nested in cells (a 37 KB file took 2 GB)."""
    from lxml import etree

    paragraph, row, cell, text = qn("w:p"), qn("w:tr"), qn("w:tc"), qn("w:t")
    parts: list[str] = []
    runs: list[list[str]] = []  # the text of each paragraph open now, innermost last
    cells: list[list[str]] = []  # the paragraphs of each cell open now
    rows: list[list[str]] = []  # the cells of each row open now
    chars, deadline = 0, time.monotonic() + limits.max_seconds
    for n, (event, element) in enumerate(etree.iterwalk(body, events=("start", "end"))):
        if n % 64 == 0 and time.monotonic() > deadline:
            raise ChatError(
                ErrorCode.FILE_UNREADABLE,
                _("Reading this Word document takes too long; attach a smaller part of it, or its text."),
            )
        tag = element.tag
        if event == "start":
            if tag == paragraph:
                runs.append([])
            elif tag == cell:
                cells.append([])
            elif tag == row:
                rows.append([])
            elif tag == text and runs and element.text:
                runs[-1].append(element.text)
                chars += len(element.text)
                if chars > limits.max_chars:
                    raise ChatError(
                        ErrorCode.FILE_TOO_LARGE,
                        _("This file holds too much text: at most %(chars)s characters.")
                        % {"chars": f"{limits.max_chars:,}"},
                    )
            continue
        if tag == paragraph and runs:
            line = "".join(runs.pop())
            (cells[-1] if cells else parts).append(line)
        elif tag == cell and cells:
            content = " ".join(p for p in cells.pop() if p)
            if rows:
                rows[-1].append(content)
        elif tag == row and rows:
            line = "\t".join(rows.pop())
            (cells[-1] if cells else parts).append(line)
    return "\n".join(parts)
