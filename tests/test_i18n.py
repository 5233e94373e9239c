"""The translation catalogs (locale/, docs/translating.md): complete, compiled, and holding every string the code
marks; and no bare English left in the templates. A new string someone forgets to translate fails here."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest
from django.conf import settings

from tests.helpers.tools import missing_tool

ROOT = Path(__file__).resolve().parent.parent
LOCALES = [code for code, _name in settings.LANGUAGES if code != "en"]
DOMAINS = ["django", "djangojs"]


def locale_dir(code: str) -> str:
    from django.utils.translation import to_locale

    return to_locale(code)  # zh-hans -> zh_Hans


CATALOGS = [(code, domain) for code in LOCALES for domain in DOMAINS]


def po_path(code, domain) -> Path:
    return ROOT / "locale" / locale_dir(code) / "LC_MESSAGES" / f"{domain}.po"


def catalog(entries) -> dict:
    """What a catalog says, comparable across .po and .mo: (context, msgid, plural) -> translations."""
    return {
        (e.msgctxt, e.msgid, e.msgid_plural): (
            tuple(v for _k, v in sorted(e.msgstr_plural.items())) if e.msgid_plural else (e.msgstr,)
        )
        for e in entries
        if e.msgid and not e.obsolete
    }


def test_simplified_chinese_is_offered_beside_english():
    assert dict(settings.LANGUAGES).keys() == {"en", "zh-hans"}
    assert LOCALES == ["zh-hans"]


@pytest.mark.parametrize(("code", "domain"), CATALOGS)
def test_every_string_is_translated_and_none_is_fuzzy(code, domain):
    po = polib.pofile(str(po_path(code, domain)))
    assert not po.metadata_is_fuzzy, "the header is marked fuzzy: msgfmt would skip its plural forms"
    assert "nplurals=1" in po.metadata["Plural-Forms"]
    assert len(po) > 50
    untranslated = [e.msgid for e in po.untranslated_entries() if not e.obsolete]
    fuzzy = [e.msgid for e in po.fuzzy_entries()]
    empty_plurals = [e.msgid for e in po if e.msgid_plural and not all(e.msgstr_plural.values())]
    assert not untranslated, f"untranslated in {domain}.po: {untranslated}"
    assert not fuzzy, f"fuzzy (msgmerge guessed; check and clear the flag) in {domain}.po: {fuzzy}"
    assert not empty_plurals


@pytest.mark.parametrize(("code", "domain"), CATALOGS)
def test_translations_keep_every_placeholder(code, domain):
    """A translation that drops or misspells %(name)s, {name} or an HTML tag breaks the page or the sentence."""
    marks = re.compile(r"%\(\w+\)[sdrf]|%%|\{\w+\}|</?\w+")
    for e in polib.pofile(str(po_path(code, domain))):
        for translated in e.msgstr_plural.values() if e.msgid_plural else [e.msgstr]:
            source = e.msgid_plural or e.msgid
            assert sorted(set(marks.findall(translated))) == sorted(set(marks.findall(source))), e.msgid


@pytest.mark.parametrize(("code", "domain"), CATALOGS)
def test_the_committed_mo_files_are_compiled_from_the_po_files(code, domain):
    """Django reads the .mo files; a fresh machine needs no gettext to run because they are committed, so each
    must say exactly what its .po says (run `manage.py compilemessages` after editing a .po)."""
    po = po_path(code, domain)
    mo = po.with_suffix(".mo")
    assert mo.exists(), f"{mo} is missing: run manage.py compilemessages"
    assert catalog(polib.mofile(str(mo))) == catalog(polib.pofile(str(po)))


def test_makemessages_finds_no_string_missing_from_the_catalogs(tmp_path):
    """Every string the code marks (templates, Python, the scripts' t()) is in the committed catalogs: runs the
    project's own makemessages on a copy of the sources, as the maintainer would (docs/translating.md)."""
    if not shutil.which("xgettext") or not shutil.which("msgmerge"):
        missing_tool("GNU gettext (xgettext, msgmerge) is not installed: apt install gettext")
    work = tmp_path / "src"
    for name in ("chat", "chatsite", "inference", "templates", "static", "locale"):  # settings import inference
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__", "vendor"))
    shutil.copy(ROOT / "manage.py", work / "manage.py")
    code = locale_dir(LOCALES[0])
    for domain in DOMAINS:
        run = subprocess.run(
            [sys.executable, "manage.py", "makemessages", "-l", code, "-d", domain, "--no-obsolete"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=300,
            env={**_env(), "PYTHONPATH": str(work), "SECRET_KEY": "makemessages-only"},
        )
        assert run.returncode == 0, run.stderr
    for domain in DOMAINS:
        committed = catalog(polib.pofile(str(po_path(LOCALES[0], domain))))
        found = catalog(polib.pofile(str(work / "locale" / code / "LC_MESSAGES" / f"{domain}.po")))
        new = sorted(key[1] for key in found.keys() - committed.keys())
        gone = sorted(key[1] for key in committed.keys() - found.keys())
        assert not new, f"strings marked in the code but not in {domain}.po (run makemessages, translate): {new}"
        assert not gone, f"strings in {domain}.po that the code no longer marks (run makemessages): {gone}"


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}


# --- no bare English in the templates ---------------------------------------------------------------------------
# Text a person reads must be inside {% translate %} / {% blocktranslate %}. The guard strips every template tag,
# variable and comment, the translated blocks with them, and the HTML tags; what is left must hold no word. Words
# that are the same in every language (names of formats and products) are listed here.
NOT_WORDS = {"JSON", "JSONL", "SFT", "API", "OpenAI", "Markdown", "sk", "ms", "UTC"}
ATTRIBUTES = re.compile(r'\s(?:placeholder|title|aria-label|alt|value)="([^"{]*[A-Za-z][^"]*)"')


def bare_text(source: str) -> list[str]:
    source = re.sub(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}", " ", source, flags=re.S)
    source = re.sub(r"{%\s*blocktranslate.*?{%\s*endblocktranslate\s*%}", " ", source, flags=re.S)
    source = re.sub(r"<(script|style)\b.*?</\1>", " ", source, flags=re.S)
    source = re.sub(r"{#.*?#}", " ", source, flags=re.S)
    source = re.sub(r"{%\s*block\s+body_?class\s*%}.*?{%\s*endblock\s*%}", " ", source, flags=re.S)  # CSS classes
    # A lower-case word as a value is for the program (a hidden field's, a button's returnValue), not for a person.
    found = [m.group(1) for m in ATTRIBUTES.finditer(source) if not re.fullmatch(r"[a-z0-9_-]+", m.group(1))]
    source = re.sub(r"{%.*?%}|{{.*?}}", " ", source, flags=re.S)
    source = re.sub(r"<[^>]*>|&#?\w+;", " ", source, flags=re.S)
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z'’]*(?:-[A-Za-z]+)*", source) if w not in NOT_WORDS and len(w) > 1]
    return found + words


def test_the_guard_catches_bare_english_and_passes_translated_text():
    assert bare_text('<p>Hello there</p><button title="Open it">{% translate "Go" %}</button>') == [
        "Open it",
        "Hello",
        "there",
    ]
    assert bare_text('{% blocktranslate %}Hi {{ name }}{% endblocktranslate %}<a href="{% url "x" %}">→</a>') == []


TEMPLATES = sorted(p for p in (ROOT / "templates").rglob("*") if p.is_file())


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT / "templates")))
def test_templates_hold_no_bare_english(path):
    assert bare_text(path.read_text()) == []


def test_no_module_that_translates_with_underscore_also_uses_it_as_a_throwaway_name():
    """``x, _ = …`` in a function of a module that imported ``gettext as _`` makes ``_`` local to that function:
    its ``_("…")`` then fails only when that sentence is needed. Such a module imports ``gettext`` by name."""
    import ast

    clashes = []
    for path in sorted((ROOT / "chat").rglob("*.py")):
        source = path.read_text()
        if "gettext as _" not in source:
            continue
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Name) and node.id == "_" and isinstance(node.ctx, ast.Store)) or (
                isinstance(node, ast.arg) and node.arg == "_"
            ):
                clashes.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert clashes == []
