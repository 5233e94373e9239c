"""The attached documents in a reply's prompt: a short document whole, a long one by its passages that the
database's full-text search ranks best for the question (``search.py``), all within a character budget, in a
labelled block before the question that numbers each piece and says where it comes from. What was quoted is
returned as the reply's sources (stored on the reply, shown under it)."""

from __future__ import annotations

from django.conf import settings

from chat.documents import search
from chat.documents.selectors import attachments_for_prompt
from chat.models import Attachment, Message, Passage

HEADER = (
    "The person attached documents to this conversation. Below are the parts of them used for this question, "
    "each numbered [n] with the document, page and passage it comes from. Answer from them where they help, "
    "and say which [n] you used."
)


def with_documents(*, history: list[dict], message: Message) -> tuple[list[dict], list[dict]]:
    """``history`` (the reply's turns, last one the question) with the documents' block put before the question,
    and the sources quoted. Unchanged, with no sources, when the conversation has no attachment up to the
    question."""
    if not history or history[-1]["role"] != Message.Role.USER or message.parent_id is None:
        return history, []
    documents = attachments_for_prompt(conversation_id=message.conversation_id, up_to_message_id=message.parent_id)
    if not documents:
        return history, []
    question = history[-1]["content"]
    budget = settings.CHAT_ATTACHMENT_PROMPT_CHARS
    pieces: list[tuple[dict, str]] = []  # (source, text)
    long: list[Attachment] = []
    for document in documents:
        if len(document.text) <= settings.CHAT_ATTACHMENT_WHOLE_CHARS:
            pieces.append((_source(document, None), document.text))
        else:
            long.append(document)
    if long:
        by_id = {d.pk: d for d in long}
        for passage in _passages_for(long, question):
            pieces.append((_source(by_id[passage.attachment_id], passage), passage.text))
    blocks, sources = [], []
    for source, text in pieces:
        if len(text) > budget:
            continue
        budget -= len(text)
        source["n"] = len(sources) + 1
        sources.append(source)
        blocks.append(f"[{source['n']}] {_where(source)}:\n<<<\n{text}\n>>>")
    if not sources:
        return history, []
    content = "\n\n".join([HEADER, *blocks, f"Question: {question}"])
    return [*history[:-1], {"role": Message.Role.USER, "content": content}], sources


def _passages_for(documents: list[Attachment], question: str) -> list[Passage]:
    """The best-ranked passages for the question; when no word of it is in any (a question like "summarise
    this"), each document's opening passages instead."""
    limit = settings.CHAT_ATTACHMENT_PASSAGES
    ids = search.ranked_passage_ids(attachment_ids=[d.pk for d in documents], question=question, limit=limit)
    if ids:
        by_id = Passage.objects.in_bulk(ids)
        return [by_id[i] for i in ids if i in by_id]
    per = max(1, limit // len(documents))
    return list(Passage.objects.filter(attachment__in=documents, seq__lte=per).order_by("attachment_id", "seq")[:limit])


def _source(document: Attachment, passage: Passage | None) -> dict:
    return {
        "attachment": document.pk,
        "name": document.name,
        "passage": passage.seq if passage else None,
        "passages": getattr(document, "passage_count", None),
        "page": passage.page if passage else None,
        "whole": passage is None,
    }


def _where(source: dict) -> str:
    if source["whole"]:
        return f"{source['name']} (the whole document)"
    parts = [source["name"]]
    if source["page"]:
        parts.append(f"page {source['page']}")
    parts.append(f"passage {source['passage']}" + (f" of {source['passages']}" if source["passages"] else ""))
    return ", ".join(parts)
