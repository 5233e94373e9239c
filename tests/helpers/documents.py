"""Documents built in the tests: PDFs with real text pages, Word files, and the hostile kinds (a zip bomb .docx,
a 10,000-page PDF made with pypdf, an encrypted PDF, garbage)."""

from __future__ import annotations

import io
import random
import zipfile

# The one distinctive fact of the long document: retrieval must find its passage among many others.
FACT = "The lighthouse keeper's parrot is named Bartholomew Quince and it whistles sea shanties at dawn."
QUESTION = "What is the name of the lighthouse keeper's parrot?"

_WORDS = (
    "harvest orchard meadow granite valley river copper engine ledger census canal bridge tariff"
    " market weaver pottery lantern village furnace quarry timber wool barley monastery archive"
    " treaty council harbour ferry railway station telegraph almanac chapel mill vineyard"
).split()


def filler(paragraphs: int, seed: int = 7) -> list[str]:
    """Paragraphs of plain prose that share no word with FACT or QUESTION."""
    rng = random.Random(seed)
    out = []
    for i in range(paragraphs):
        sentences = []
        for _ in range(6):
            words = rng.sample(_WORDS, 9)
            sentences.append(" ".join(words).capitalize() + ".")
        out.append(f"Section {i + 1}. " + " ".join(sentences))
    return out


def long_text_with_fact(paragraphs: int = 40, at: int = 23) -> str:
    parts = filler(paragraphs)
    parts.insert(at, FACT)
    return "\n\n".join(parts)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(pages: list[str], raw: list[bytes] | None = None) -> bytes:
    """A well-formed PDF whose pages hold these texts (Helvetica, one line per line), with a correct xref; ``raw``:
    the pages' content streams as given instead."""
    n = len(raw) if raw is not None else len(pages)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        ("<< /Type /Pages /Kids [" + " ".join(f"{4 + 2 * i} 0 R" for i in range(n)) + f"] /Count {n} >>").encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages if raw is None else [""] * n):
        lines = []
        for line in text.split("\n"):
            while len(line) > 90:  # short lines, as a real page has
                cut = line.rfind(" ", 0, 90)
                cut = cut if cut > 0 else 90
                lines.append(line[:cut])
                line = line[cut:].lstrip()
            lines.append(line)
        stream = "BT /F1 9 Tf 30 810 Td 11 TL " + " ".join(f"({_escape(x)}) Tj T*" for x in lines) + " ET"
        objects.append(
            (
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
                f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
            ).encode()
        )
        data = stream.encode("latin-1") if raw is None else raw[i]
        objects.append(f"<< /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream")
    return _pdf_file(objects)


def _pdf_file(objects: list[bytes]) -> bytes:
    """These objects (1: the catalog) as a PDF file with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def pdf_many_pages(count: int = 10_000) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(count):
        writer.add_blank_page(width=72, height=72)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def pdf_encrypted(text: str = "secret plans") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes([text]))))
    writer.encrypt(user_password="hunter2", owner_password="owner", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def docx_bytes(paragraphs: list[str]) -> bytes:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "cell one", "cell two"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def docx_zip_bomb(inflated_mb: int = 200) -> bytes:
    """A real .docx with one more member that inflates to ``inflated_mb`` MB of zeros (a few hundred KB packed)."""
    base = zipfile.ZipFile(io.BytesIO(docx_bytes(["An innocent looking letter."])))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out:
        for item in base.infolist():
            out.writestr(item, base.read(item.filename))
        info = zipfile.ZipInfo("word/media/image1.png")
        info.compress_type = zipfile.ZIP_DEFLATED
        with out.open(info, "w", force_zip64=True) as member:
            chunk = bytes(1024 * 1024)
            for _ in range(inflated_mb):
                member.write(chunk)
    return buffer.getvalue()


def binary_garbage(size: int = 4096, seed: int = 3) -> bytes:
    data = bytearray(random.Random(seed).randbytes(size))
    data[10] = 0  # binary for sure
    return bytes(data)


def pdf_heavy_page(operators: int = 150_000) -> bytes:
    """One page of very many tiny text operators: slow to extract (seconds), under every size bound."""
    stream = b"BT /F1 9 Tf 30 810 Td " + b"(ab) Tj 1 0 Td " * operators + b" ET"
    return pdf_bytes([], raw=[stream])


def pdf_repeated_form(form: bytes, calls: int) -> bytes:
    """One page that draws the same form XObject ``calls`` times: its own content stream is ``calls`` short
    operators, while reading it reads the form's content ``calls`` times over."""
    import zlib

    packed = zlib.compress(form)
    page_content = b"/X0 Do\n" * calls
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 3 0 R >> /XObject << /X0 6 0 R >> >> /Contents 5 0 R >>",
        f"<< /Length {len(page_content)} >>\nstream\n".encode() + page_content + b"\nendstream",
        (
            "<< /Type /XObject /Subtype /Form /BBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Filter /FlateDecode /Length {len(packed)} >>\nstream\n"
        ).encode()
        + packed
        + b"\nendstream",
    ]
    return _pdf_file(objects)


def docx_nested_tables(depth: int, text: str) -> bytes:
    """A real .docx whose body is ``depth`` tables each inside the one cell of the one above, ``text`` in the
    innermost cell (a few KB of file however deep)."""
    import docx

    document = docx.Document()
    document.add_paragraph("Before the tables.")
    cell = document.add_table(rows=1, cols=1).rows[0].cells[0]
    for _ in range(depth - 1):
        cell = cell.add_table(rows=1, cols=1).rows[0].cells[0]
    cell.text = text
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
