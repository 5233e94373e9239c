"""The manual cannot drift from the tree: docs/architecture.md's module map lists exactly the modules that
exist, every doc the README links to exists, and the README stays a five-minute read."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
README = (ROOT / "README.md").read_text()


def _modules() -> set[str]:
    found = set()
    for package in ("chat", "chatsite", "inference"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "__init__.py" or "migrations" in path.parts:
                continue
            found.add(str(path.relative_to(ROOT)))
    return found


def test_the_module_map_lists_exactly_the_modules_that_exist():
    section = ARCHITECTURE.split("\n## Module map\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\s*- `([\w/]+\.py)`", section, flags=re.M))
    assert sorted(_modules() - listed) == [], "modules missing from docs/architecture.md's module map"
    assert sorted(listed - _modules()) == [], "modules in the map that do not exist"


def test_every_document_the_readme_links_to_exists_and_the_readme_is_short():
    links = re.findall(r"\]\((docs/[\w./-]+?)(?:#[\w-]+)?\)", README)
    assert links and [link for link in links if not (ROOT / link).exists()] == []
    assert len(README) < 15_000
