"""Extraction and chunking, no database: every kind read, every hostile file refused with a stable code and a
sentence, each bound checked before the work it bounds."""

import time

import pytest

from chat.documents import chunking, extract
from chat.errors import ChatError
from tests.helpers.documents import (
    FACT,
    binary_garbage,
    docx_bytes,
    docx_nested_tables,
    docx_zip_bomb,
    pdf_bytes,
    pdf_encrypted,
    pdf_many_pages,
    pdf_repeated_form,
)

LIMITS = extract.Limits(max_pages=300, max_chars=1_000_000, max_unzipped_bytes=50 * 1024 * 1024, max_seconds=20)


def refused(name, data, limits=LIMITS) -> ChatError:
    with pytest.raises(ChatError) as err:
        extract.extract(name, data, limits)
    assert err.value.detail.endswith(".") and len(err.value.detail) > 20  # a sentence, for a person
    return err.value


def test_text_markdown_and_code_are_read_as_text_never_run():
    assert extract.extract("notes.md", "# Title\n\nsome *text*".encode(), LIMITS).text == "# Title\n\nsome *text*"
    code = b"import os\nos.system('rm -rf /')\n"
    found = extract.extract("evil.py", code, LIMITS)
    assert (found.kind, found.text, found.pages) == ("text", code.decode(), None)
    assert extract.extract("Dockerfile", b"FROM debian", LIMITS).text == "FROM debian"
    assert extract.extract("bom.txt", "\ufeffhello".encode(), LIMITS).text == "hello"


def test_a_pdf_is_read_page_by_page():
    found = extract.extract("report.pdf", pdf_bytes(["first page words", FACT]), LIMITS)
    assert found.kind == "pdf" and len(found.pages) == 2
    assert "first page words" in found.pages[0] and "Bartholomew Quince" in found.pages[1]


def test_a_word_document_is_read_with_its_tables():
    found = extract.extract("letter.docx", docx_bytes(["Dear reader,", FACT]), LIMITS)
    assert found.kind == "docx" and "Dear reader," in found.text and FACT in found.text
    assert "cell one\tcell two" in found.text


def test_a_pdf_of_10000_pages_is_refused_from_its_page_tree_before_any_page_is_read():
    data = pdf_many_pages(10_000)
    started = time.monotonic()
    err = refused("big.pdf", data)
    assert err.code == "file_too_many_pages" and "300" in err.detail
    # Read from the page tree's count: no page was extracted (10,000 would take far longer than this).
    assert time.monotonic() - started < 5


def test_a_zip_bomb_docx_is_refused_from_its_directory_before_anything_inflates():
    bomb = docx_zip_bomb(200)  # 200 MB of zeros inside a file of a few hundred KB
    assert len(bomb) < 2 * 1024 * 1024
    err = refused("letter.docx", bomb)
    assert err.code == "file_too_large" and "50 MB" in err.detail


def test_an_encrypted_pdf_is_refused_with_a_sentence():
    assert refused("secret.pdf", pdf_encrypted()).code == "file_encrypted"


@pytest.mark.parametrize(
    "name,data,code",
    [
        ("notes.txt", binary_garbage(), "file_unreadable"),
        ("notes.txt", "déjà".encode("latin-1"), "file_unreadable"),  # not UTF-8
        ("notes.txt", "hi".encode("utf-16"), "file_unreadable"),
        ("report.pdf", binary_garbage(), "file_unreadable"),
        ("report.pdf", b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 9 0 R>> endobj trailer <<>>", "file_unreadable"),
        ("letter.docx", binary_garbage(), "file_unreadable"),
        ("letter.docx", b"PK\x03\x04 not really a zip", "file_unreadable"),
        ("program.exe", b"MZ\x90\x00", "file_unsupported"),
        ("picture.png", b"\x89PNG\r\n", "file_unsupported"),
        ("archive.zip", b"PK\x03\x04", "file_unsupported"),
        ("empty.txt", b"   \n\n", "file_no_text"),
        ("blank.pdf", pdf_bytes([""]), "file_no_text"),
    ],
)
def test_malformed_unsupported_and_empty_files_are_refused_with_a_code(name, data, code):
    assert refused(name, data).code == code


def test_json_garbage_is_only_ever_text():
    # A .json file is read as text, whatever it holds: nothing parses it, so a JSON bomb is just characters.
    bomb = ("[" * 100_000 + "]" * 100_000).encode()
    assert extract.extract("bomb.json", bomb, LIMITS).text.startswith("[[[")


def test_text_past_the_character_bound_is_refused():
    small = extract.Limits(max_pages=300, max_chars=1000, max_unzipped_bytes=10**8, max_seconds=20)
    assert refused("long.txt", b"word " * 1000, small).code == "file_too_large"
    assert refused("long.pdf", pdf_bytes(["word " * 150] * 3), small).code == "file_too_large"


def test_chunking_cuts_at_breaks_within_the_size_and_never_across_pages():
    text = "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(10))
    pieces = chunking.split(text, 800)
    assert all(len(p) <= 800 for p in pieces) and len(pieces) >= 4
    assert " ".join(" ".join(p.split()) for p in pieces) == " ".join(text.split())  # nothing lost
    paged = chunking.passages("", 800, ["page one text", "", "page three " * 100])
    assert [page for page, _ in paged][0] == 1 and 2 not in [page for page, _ in paged]
    assert {page for page, _ in paged} == {1, 3}
    assert chunking.split("x" * 2000, 800) == ["x" * 800, "x" * 800, "x" * 400]  # no break: a hard cut


def _form_reads(monkeypatch) -> list[int]:
    """Counts pypdf's reads of a form XObject's content (one per ``Do`` drawing it)."""
    from pypdf import PageObject

    reads, read_form = [], PageObject._extract_text__xform

    def counted(self, **kwargs):
        reads.append(1)
        return read_form(self, **kwargs)

    monkeypatch.setattr(PageObject, "_extract_text__xform", counted)
    return reads


def test_a_tiny_pdf_drawing_one_form_again_and_again_stops_at_the_character_bound_inside_the_page(monkeypatch):
    """The page's own content is 300 short operators; each draws a form of 100 characters. The bound is checked
    as the text comes, not once the page is read: ~10 forms, not all 300, before the refusal."""
    data = pdf_repeated_form(b"BT /F1 9 Tf 30 800 Td (" + b"abcdefghij" * 10 + b") Tj ET", calls=300)
    assert len(data) < 4000
    reads = _form_reads(monkeypatch)
    err = refused("tiny.pdf", data, LIMITS.__class__(**{**LIMITS.__dict__, "max_chars": 1_000}))
    assert err.code == "file_too_large"
    assert 5 <= len(reads) <= 15


@pytest.mark.parametrize("pages", [1, 2])
def test_a_page_that_is_one_form_past_the_character_bound_is_refused_not_read_as_empty(pages):
    """pypdf reads a form inside its own ``except Exception`` and goes on without that form's text: a page that
    is one form (an included PDF) passing the bound inside it read as no text at all — a second page then went
    in without it."""
    form = pdf_repeated_form(b"BT /F1 9 Tf 30 800 Td (" + b"abcdefghij" * 200 + b") Tj ET", calls=1)
    data = form if pages == 1 else _two_pages(b"BT /F1 9 Tf 30 800 Td (" + b"x" * 500 + b") Tj ET", form)
    err = refused("included.pdf", data, LIMITS.__class__(**{**LIMITS.__dict__, "max_chars": 1_000}))
    assert err.code == "file_too_large"


def _two_pages(first: bytes, second_pdf: bytes) -> bytes:
    """A PDF of a plain page, then the one page of ``second_pdf``."""
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.add_page(PdfReader(io.BytesIO(pdf_bytes([], raw=[first]))).pages[0])
    writer.add_page(PdfReader(io.BytesIO(second_pdf)).pages[0])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_a_pdf_page_is_read_on_the_clock_operator_by_operator(monkeypatch):
    """A page drawing a form 5,000 times (pypdf's own cap) reads its content 5,000 times: hours for a heavy form,
    in a file of 2 KB. The clock is read while the page is being read: past the deadline nothing more is."""
    data = pdf_repeated_form(b"BT " + b"() Tj\n" * 1000 + b" ET", calls=50)
    reads = _form_reads(monkeypatch)
    clock = iter([0.0] + [10_000.0] * 100_000)  # the start, then every later read is past the deadline
    monkeypatch.setattr(extract.time, "monotonic", lambda: next(clock))
    err = refused("slow.pdf", data)
    assert err.code == "file_unreadable" and "takes too long" in err.detail
    assert reads == []  # stopped at the page's first operator, before its first form


def test_word_tables_nested_in_cells_are_read_once_each(monkeypatch):
    """80 tables each inside the cell of the one above, 20,000 characters in the innermost: each row used to
    join the text of every cell under it, so that text was read (and held) 80 times over."""
    payload = "deep words " * 2000
    data = docx_nested_tables(80, payload)
    assert len(data) < 60_000
    found = extract.extract("nested.docx", data, LIMITS)
    assert found.text.count("deep words") == 2000  # once
    assert found.text.startswith("Before the tables.\n") and len(found.text) < len(payload) + 100
