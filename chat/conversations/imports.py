"""Reading an uploaded file of conversations into plans the import stores (``import_services.py``): a ChatGPT data
export (``conversations.json``: a list of conversations, each a ``mapping`` of nodes with parents and a
``current_node``) or this site's own JSON export (``exports.as_json``: ``"format": "chat-conversation"``).

Pure and bounded: the size is checked before ``json.loads``; nesting too deep for Python's parser is a refusal
(``RecursionError``), not a crash; the number of conversations, nodes, the tree's depth and each text's length are
checked here, and a cycle of parents is found without recursion. Every refusal is a ``ChatError`` with an
``import_*`` code and a sentence; nothing is stored until the whole file has been read (docs/api.md, "Importing
conversations").

What becomes a message: user and assistant turns with text. A system message becomes the conversation's system
prompt (the first with text); tool output, an assistant's calls to a tool, hidden and empty nodes are left out
and their children hang from the nearest message kept above them; a turn whose kept parent has the same role
(an answer split by a tool call) is joined to it when it is that parent's only child.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.utils.translation import gettext as _

from chat.conversations.conversation_settings import SYSTEM_PROMPT_CHARS
from chat.errors import ChatError, ErrorCode
from chat.models import Message
from chat.text import clean_text

USER, ASSISTANT = Message.Role.USER.value, Message.Role.ASSISTANT.value
STATUSES = {Message.Status.COMPLETE.value, Message.Status.STOPPED.value, Message.Status.FAILED.value}
# Seconds since 1970 a timestamp may be: from 2000 to 2100; anything else is read as "unknown".
EARLIEST, LATEST = 946684800, 4102444800


@dataclass
class Turn:
    """One message to store; ``parent`` is the key of another turn of the same plan, or None."""

    key: str
    parent: str | None
    role: str
    content: str
    created_at: datetime | None
    status: str = Message.Status.COMPLETE.value
    current: bool = False


@dataclass
class Plan:
    """One conversation to store: its turns parents first, siblings oldest first."""

    title: str
    system_prompt: str
    created_at: datetime | None
    updated_at: datetime | None
    turns: list[Turn] = field(default_factory=list)


@dataclass
class _Raw:
    """A node as read from the file, before skipped nodes are folded away."""

    parent: str | None
    role: str
    text: str
    created_at: datetime | None
    order: int
    status: str = Message.Status.COMPLETE.value
    hidden: bool = False


def refuse(code: ErrorCode, sentence: str) -> ChatError:
    return ChatError(code, sentence)


def _invalid(where: str) -> ChatError:
    return refuse(
        ErrorCode.IMPORT_INVALID,
        _("The file is not a conversation export this site can read (%(where)s). Nothing was imported.")
        % {"where": where},
    )


def parse(data: bytes) -> list[Plan]:
    """The file's conversations as plans, or a ``ChatError``. ``data`` is at most ``CHAT_IMPORT_MAX_BYTES`` (the
    view checks the upload's size first; checked again here for any other caller)."""
    limit = settings.CHAT_IMPORT_MAX_BYTES
    if len(data) > limit:
        raise too_large()
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise _invalid(_("it is not UTF-8 text")) from None
    except RecursionError:
        raise _invalid(_("its JSON is nested too deeply")) from None
    except ValueError:  # JSONDecodeError, and an integer with too many digits
        raise _invalid(_("it is not valid JSON")) from None
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list) or not doc:
        raise refuse(
            ErrorCode.IMPORT_UNKNOWN_FORMAT,
            _("The file holds no conversations: upload ChatGPT's conversations.json or a .json export of this site."),
        )
    if len(doc) > settings.CHAT_IMPORT_MAX_CONVERSATIONS:
        raise refuse(
            ErrorCode.IMPORT_LIMIT,
            _("The file holds %(n)d conversations; at most %(max)d are imported at once. Nothing was imported.")
            % {"n": len(doc), "max": settings.CHAT_IMPORT_MAX_CONVERSATIONS},
        )
    budget = _Budget(settings.CHAT_IMPORT_MAX_MESSAGES)
    plans = []
    for index, item in enumerate(doc, start=1):
        if isinstance(item, dict) and isinstance(item.get("mapping"), dict):
            raws, current, meta = _chatgpt(item, index, budget)
        elif isinstance(item, dict) and item.get("format") == "chat-conversation":
            raws, current, meta = _own(item, index, budget)
        else:
            raise refuse(
                ErrorCode.IMPORT_UNKNOWN_FORMAT,
                _(
                    "Conversation %(i)d of the file is neither a ChatGPT conversation nor an export of this site: "
                    "upload ChatGPT's conversations.json or a .json export of this site. Nothing was imported."
                )
                % {"i": index},
            )
        plans.append(_plan(raws, current, meta, index))
    return plans


def too_large() -> ChatError:
    mb = settings.CHAT_IMPORT_MAX_BYTES / (1024 * 1024)
    return refuse(
        ErrorCode.IMPORT_TOO_LARGE,
        _("The file is larger than %(mb)s MB, the most this site imports at once. Nothing was imported.")
        % {"mb": f"{mb:g}"},
    )


class _Budget:
    """Nodes left for the whole file."""

    def __init__(self, left: int):
        self.total, self.left = left, left

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise refuse(
                ErrorCode.IMPORT_LIMIT,
                _(
                    "The file holds more than %(max)d messages, the most this site imports at once. "
                    "Nothing was imported."
                )
                % {"max": self.total},
            )


def _time(value) -> datetime | None:
    """A ChatGPT time (seconds since 1970) or this site's (ISO 8601); anything else is unknown."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and math.isfinite(value) and EARLIEST <= value <= LATEST:
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str) and len(value) <= 40:
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            return None
        stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        return stamp if EARLIEST <= stamp.timestamp() <= LATEST else None
    return None


def _text(value, index: int) -> str:
    text = clean_text(value).strip()
    if len(text) > settings.CHAT_IMPORT_MAX_TEXT_CHARS:
        raise refuse(
            ErrorCode.IMPORT_LIMIT,
            _(
                "A message of conversation %(i)d is longer than %(max)d characters, the most this site imports. "
                "Nothing was imported."
            )
            % {"i": index, "max": settings.CHAT_IMPORT_MAX_TEXT_CHARS},
        )
    return text


def _chatgpt_text(message: dict, index: int) -> str:
    """The text of a ChatGPT message: its content's string parts (images and other objects left out), or its
    ``text`` (code and execution output)."""
    content = message.get("content")
    if not isinstance(content, dict):
        return ""
    parts = content.get("parts")
    if isinstance(parts, list):
        return _text("\n".join(p for p in parts if isinstance(p, str)), index)
    if isinstance(content.get("text"), str):
        return _text(content["text"], index)
    return ""


def _chatgpt(item: dict, index: int, budget: _Budget) -> tuple[dict[str, _Raw], str | None, dict]:
    mapping = item["mapping"]
    budget.take(len(mapping))
    raws: dict[str, _Raw] = {}
    for order, (key, node) in enumerate(mapping.items()):
        if not isinstance(node, dict):
            raise _invalid(_("conversation %(i)d has a node that is not an object") % {"i": index})
        parent = node.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise _invalid(_("conversation %(i)d has a parent that is not a node's id") % {"i": index})
        message = node.get("message")
        role, text, stamp, hidden = "", "", None, False
        if message is not None:
            if not isinstance(message, dict):
                raise _invalid(_("conversation %(i)d has a message that is not an object") % {"i": index})
            author = message.get("author")
            role = author.get("role") if isinstance(author, dict) else ""
            role = role if isinstance(role, str) else ""
            text = _chatgpt_text(message, index)
            stamp = _time(message.get("create_time"))
            meta = message.get("metadata")
            recipient = message.get("recipient")
            # An assistant's call to a tool (code, browsing) is not a reply; a hidden node is not shown in ChatGPT.
            hidden = (isinstance(meta, dict) and meta.get("is_visually_hidden_from_conversation") is True) or (
                role == ASSISTANT and isinstance(recipient, str) and recipient != "all"
            )
        raws[key] = _Raw(parent=parent if parent in mapping else None, role=role, text=text, created_at=stamp,
                         order=order, hidden=hidden)  # fmt: skip
    current = item.get("current_node")
    meta = {
        "title": item.get("title"),
        "created_at": _time(item.get("create_time")),
        "updated_at": _time(item.get("update_time")),
    }
    return raws, current if isinstance(current, str) and current in raws else None, meta


def _own(item: dict, index: int, budget: _Budget) -> tuple[dict[str, _Raw], str | None, dict]:
    conversation, messages = item.get("conversation"), item.get("messages")
    if not isinstance(conversation, dict) or not isinstance(messages, list):
        raise _invalid(_("conversation %(i)d has no conversation or messages") % {"i": index})
    budget.take(len(messages))
    raws: dict[str, _Raw] = {}
    currents: list[str] = []
    for order, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("id"), int | str) or isinstance(m.get("id"), bool):
            raise _invalid(_("conversation %(i)d has a message without an id") % {"i": index})
        key, parent = str(m["id"]), m.get("parent")
        if parent is not None and (not isinstance(parent, int | str) or isinstance(parent, bool)):
            raise _invalid(_("conversation %(i)d has a parent that is not a message's id") % {"i": index})
        if key in raws:
            raise _invalid(_("conversation %(i)d has two messages with one id") % {"i": index})
        content = m.get("content", "")
        if not isinstance(content, str) or not isinstance(m.get("role", ""), str):
            raise _invalid(_("conversation %(i)d has a message whose content is not text") % {"i": index})
        status = m.get("status")
        raws[key] = _Raw(
            parent=None if parent is None else str(parent),
            role=m.get("role", ""),
            text=_text(content, index),
            created_at=_time(m.get("created_at")),
            order=order,
            # A reply still being written when it was exported was cut there.
            status=status if status in STATUSES else Message.Status.STOPPED.value,
        )
        # Version 1 exported the shown branch only; version 2 every branch, with the shown one marked.
        if m.get("current", True) is True:
            currents.append(key)
    for raw in raws.values():
        if raw.parent is not None and raw.parent not in raws:
            raw.parent = None
    system = conversation.get("system_prompt")
    meta = {
        "title": conversation.get("title"),
        "system_prompt": system if isinstance(system, str) else "",
        "created_at": _time(conversation.get("created_at")),
        "updated_at": _time(conversation.get("updated_at")),
    }
    # The shown branch's last message: a current one none of whose children is current.
    parents_of_current = {raws[k].parent for k in currents}
    leaves = [k for k in currents if k not in parents_of_current]
    return raws, leaves[-1] if leaves else None, meta


def _plan(raws: dict[str, _Raw], current: str | None, meta: dict, index: int) -> Plan:
    keep = {k: r.role in (USER, ASSISTANT) and bool(r.text) and not r.hidden for k, r in raws.items()}
    system = meta.get("system_prompt") or ""
    if not system:
        firsts = sorted((r.order, r.text) for r in raws.values() if r.role == "system" and r.text and not r.hidden)
        system = firsts[0][1] if firsts else ""
    # Each node's nearest kept ancestor and the depth below it, without recursion: walk up from each node until a
    # node already resolved, then resolve the walked path downwards. A node met twice on one walk is a cycle.
    resolved: dict[str, tuple[str | None, int]] = {}  # node -> (what its children hang from, kept depth)
    kept_parent: dict[str, str | None] = {}
    depth_of: dict[str, int] = {}
    max_depth = settings.CHAT_IMPORT_MAX_DEPTH
    for start in raws:
        path, seen, node = [], set(), start
        while node is not None and node not in resolved:
            if node in seen:
                raise _invalid(_("conversation %(i)d's messages are their own ancestors (a cycle)") % {"i": index})
            seen.add(node)
            path.append(node)
            node = raws[node].parent
        base = resolved[node] if node is not None else (None, 0)
        for n in reversed(path):
            above, depth = base
            if keep[n]:
                kept_parent[n], depth_of[n] = above, depth + 1
                if depth + 1 > max_depth:
                    raise refuse(
                        ErrorCode.IMPORT_LIMIT,
                        _(
                            "Conversation %(i)d is more than %(max)d messages deep, the most this site imports. "
                            "Nothing was imported."
                        )
                        % {"i": index, "max": max_depth},
                    )
                base = (n, depth + 1)
            resolved[n] = base
    kept = sorted(kept_parent, key=lambda k: (depth_of[k], raws[k].created_at or datetime.max.replace(tzinfo=UTC),
                                               raws[k].order))  # fmt: skip
    # A turn following one of its own role as that one's only child (an answer split by a tool call) is joined
    # to it: the page and the model expect turns to alternate.
    children: dict[str | None, int] = {}
    for k in kept:
        children[kept_parent[k]] = children.get(kept_parent[k], 0) + 1
    alias: dict[str, str] = {}
    turns: dict[str, Turn] = {}
    for k in kept:
        parent = kept_parent[k]
        parent = alias.get(parent, parent) if parent is not None else None
        raw = raws[k]
        if parent is not None and turns[parent].role == raw.role and children[kept_parent[k]] == 1:
            joined = turns[parent].content + "\n\n" + raw.text
            turns[parent].content = _text(joined, index)
            alias[k] = parent
            continue
        turns[k] = Turn(key=k, parent=parent, role=raw.role, content=raw.text, created_at=raw.created_at,
                        status=raw.status)  # fmt: skip
    # The branch on show: from the current node's nearest kept turn up to a root. With no current node, the
    # newest turn's branch.
    leaf = None
    if current is not None:
        leaf = current if keep[current] else resolved[current][0]
    if leaf is None and turns:
        leaf = max(kept, key=lambda k: (raws[k].created_at or datetime.min.replace(tzinfo=UTC), raws[k].order))
    leaf = alias.get(leaf, leaf) if leaf is not None else None
    while leaf is not None:
        turns[leaf].current = True
        leaf = turns[leaf].parent
    title = meta.get("title")
    title = clean_text(title).strip()[:200] if isinstance(title, str) else ""
    return Plan(
        title=title,
        # Cut to the bound a system prompt typed on the page has: it goes into every later prompt of the chat.
        system_prompt=clean_text(system).strip()[:SYSTEM_PROMPT_CHARS],
        created_at=meta.get("created_at"),
        updated_at=meta.get("updated_at"),
        turns=list(turns.values()),
    )
