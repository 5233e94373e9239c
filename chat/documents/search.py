"""The passages of some attachments that best answer a question, ranked by the database's own full-text search:
SQLite's FTS5 (``bm25``) on the embedded default, PostgreSQL's ``tsvector``/``tsquery`` (``ts_rank``) in
production. Both indexes are made by migration 0022_documents; no search server is needed.

The question's words are OR-ed (a question shares a few words with the passage that answers it, not all of
them), each quoted as a plain term so nothing a person types is read as query syntax.
"""

from __future__ import annotations

import logging
import re

from django.db import connection
from redis.exceptions import RedisError

from chat.names import PASSAGES_DELETED_KEY
from chat.store import client

log = logging.getLogger(__name__)

# Words that say nothing about which passage answers: left out of the query (PostgreSQL's 'english' config drops
# its own too; FTS5 has no stop list).
STOP_WORDS = frozenset(
    "a an and are as at be but by can could did do does for from had has have how i if in into is it its me my "
    "no not of on or our please say says said she he so than that the their them then there these they this to "
    "was we were what when where which who whom why will with would you your tell about document file text "
    "attached attachment passage".split()
)
MAX_TERMS = 32


def terms(question: str) -> list[str]:
    """The question's distinct searchable words, lowercased, in order."""
    seen: dict[str, None] = {}
    for word in re.findall(r"\w+", question.lower()):
        if len(word) > 1 and word not in STOP_WORDS and not word.isdigit() or (word.isdigit() and len(word) > 2):
            seen.setdefault(word[:64], None)
    return list(seen)[:MAX_TERMS]


def ranked_passage_ids(*, attachment_ids: list[int], question: str, limit: int) -> list[int]:
    """Ids of the best ``limit`` passages of these attachments for the question, best first (none when no word
    of the question is in them)."""
    words = terms(question)
    if not words or not attachment_ids or limit < 1:
        return []
    marks = ", ".join(["%s"] * len(attachment_ids))
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            query = " OR ".join(f'"{w}"' for w in words)  # \w+ words: no quote can be in one
            cursor.execute(
                "SELECT p.id FROM chat_passage_fts f JOIN chat_passage p ON p.id = f.rowid "
                f"WHERE chat_passage_fts MATCH %s AND p.attachment_id IN ({marks}) "
                "ORDER BY bm25(chat_passage_fts), p.id LIMIT %s",
                [query, *attachment_ids, limit],
            )
        elif connection.vendor == "postgresql":
            query = " | ".join(f"'{w}'" for w in words)
            cursor.execute(
                "SELECT id FROM (SELECT p.id, ts_rank(to_tsvector('english'::regconfig, p.text), q) AS rank "
                "FROM chat_passage p, to_tsquery('english'::regconfig, %s) q "
                f"WHERE p.attachment_id IN ({marks}) AND to_tsvector('english'::regconfig, p.text) @@ q) ranked "
                "ORDER BY rank DESC, id LIMIT %s",
                [query, *attachment_ids, limit],
            )
        else:  # no full-text search here: the documents' first passages stand in (chat/documents/prompt.py)
            return []
        return [row[0] for row in cursor.fetchall()]


def index_forget_deleted() -> None:
    """After passages were deleted (once the deletion commits): their words out of the full-text index itself, at
    the next sweep (``index_sweep``, every ``CHAT_SWEEP_INTERVAL_S``). SQLite's FTS5 records a deletion as a
    segment of its own that carries each deleted term, beside the segment that held it, until segments merge, so
    a deleted document's words stayed in the index (and the file). Merging rewrites the whole index (~0.4 s for
    60,000 passages), so it is not done here, in the request, once per deletion: the sweep does it once, off the
    thread the sockets share, for every deletion since the last. PostgreSQL: nothing to do (a GIN index's dead
    entries go with vacuum, as every deleted row's do)."""
    if connection.vendor != "sqlite":
        return
    try:
        client().set(PASSAGES_DELETED_KEY, 1)
    except RedisError:  # no sweep runs without Redis either: merge now rather than keep the words
        log.warning("could not mark the passage index for merging; merging it now", exc_info=True)
        _merge()


def index_sweep() -> None:
    """Part of every sweep: merge SQLite's full-text index if passages were deleted since the last one."""
    if connection.vendor == "sqlite" and client().delete(PASSAGES_DELETED_KEY):
        _merge()


def _merge() -> None:
    # ``optimize`` merges every segment into one, dropping deleted terms; the file's freed pages are zeroed
    # (``secure_delete`` is on).
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO chat_passage_fts(chat_passage_fts) VALUES('optimize')")
