"""A person's own conversation as a file: Markdown to read (the shown branch, as on the page), JSON to process
(every branch, the shown one marked ``current``: what the import reads back, chat/conversations/imports.py);
replies as their Markdown source, what the person typed exactly as typed."""

from __future__ import annotations

import json

from chat.documents.selectors import attachments_for_conversation
from chat.experiments import assignment
from chat.models import Conversation, Message

# 1: the shown branch only; 2: every message, each with ``current`` (on the shown branch or not).
FORMAT_VERSION = 2


def as_json(conversation: Conversation, messages: list[Message]) -> str:
    """The conversation, its settings and each message with its metrics, as one JSON document: ``messages`` are
    every branch's, oldest first, and ``parent`` and ``current`` give the tree and the branch on show; the
    documents attached in it, as their extracted text, and each reply's sources."""
    attachments = attachments_for_conversation(conversation_id=conversation.pk)
    return json.dumps(
        {
            "format": "chat-conversation",
            "version": FORMAT_VERSION,
            "conversation": {
                "id": conversation.pk,
                "title": conversation.title,
                "model": assignment.shown_model(conversation),
                "system_prompt": conversation.system_prompt,
                "params": conversation.params,
                "created_at": conversation.created_at.isoformat(),
                "updated_at": conversation.updated_at.isoformat(),
            },
            "messages": [
                {
                    "id": m.pk,
                    "parent": m.parent_id,
                    "role": m.role,
                    "content": m.content,
                    "status": m.status,
                    "current": m.is_current,
                    "created_at": m.created_at.isoformat(),
                    "model": m.shown_model_name or m.model_name or None,
                    "params": m.params or None,
                    "prompt_tokens": m.prompt_tokens,
                    "completion_tokens": m.completion_tokens,
                    "error": m.error or None,
                    "attachments": [a.pk for a in attachments if a.message_id == m.pk],
                    "sources": m.sources or [],
                }
                for m in messages
            ],
            "attachments": [
                {
                    "id": a.pk,
                    "message": a.message_id,
                    "name": a.name,
                    "kind": a.kind,
                    "size": a.size,
                    "pages": a.pages,
                    "created_at": a.created_at.isoformat(),
                    "text": a.text,
                }
                for a in attachments
            ],
        },
        ensure_ascii=False,
        indent=2,
    )


def as_markdown(conversation: Conversation, messages: list[Message]) -> str:
    """A heading per turn. A person's message goes in a fence long enough that nothing in it can close it,
    so what they typed reads back exactly; replies are Markdown already."""
    lines = [
        f"# {conversation.title or f'Conversation {conversation.pk}'}",
        "",
        f"_Exported from the chat server: model {assignment.shown_model(conversation) or 'unknown'}, "
        f"started {conversation.created_at:%Y-%m-%d %H:%M} UTC._",
        "",
    ]
    if conversation.system_prompt:
        lines += ["## System prompt", "", _fenced(conversation.system_prompt), ""]
    attachments = attachments_for_conversation(conversation_id=conversation.pk)
    for m in messages:
        if m.role == Message.Role.USER:
            lines += ["## You", "", _fenced(m.content), ""]
            names = [a.name for a in attachments if a.message_id == m.pk]
            if names:
                lines += ["_Attached: " + ", ".join(f"`{n}`" for n in names) + "_", ""]
        else:
            note = "" if m.status == Message.Status.COMPLETE else f" ({m.status})"
            lines += [f"## Assistant{note}", "", m.content or "_(no text)_", ""]
            if m.sources:
                lines += ["_Sources: " + "; ".join(_source_line(s) for s in m.sources) + "_", ""]
    for a in attachments:
        pages = f", {a.pages} page{'s' if a.pages != 1 else ''}" if a.pages else ""
        lines += [f"## Attached document: {a.name}", "", f"_{a.kind}, {a.size} bytes{pages}; its text:_", ""]
        lines += [_fenced(a.text), ""]
    return "\n".join(lines)


def _source_line(source: dict) -> str:
    if source.get("whole"):
        return f"[{source.get('n')}] {source.get('name')}"
    page = f", page {source['page']}" if source.get("page") else ""
    return f"[{source.get('n')}] {source.get('name')}{page}, passage {source.get('passage')}"


def _fenced(text: str) -> str:
    run, count = 0, 0
    for ch in text:  # the longest run of backticks anywhere in the text
        run = run + 1 if ch == "`" else 0
        count = max(count, run)
    fence = "`" * max(3, count + 1)
    return f"{fence}text\n{text}\n{fence}"
