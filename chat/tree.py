"""Reading a conversation's tree of messages: alternatives (siblings), the shown branch below a message, the
newest path from one. Pure functions over the rows ``thread_rows`` reads once, so a branch costs one query.
"""

from __future__ import annotations

from chat.models import Message


def thread_rows(*, conversation_id: int) -> dict[int, dict]:
    """Every message of a conversation as ``{id: {id, parent_id, role, is_current}}``: the tree, in one query."""
    return {
        row["id"]: row
        for row in Message.objects.filter(conversation_id=conversation_id).values(
            "id", "parent_id", "role", "is_current"
        )
    }


def siblings_in(rows: dict[int, dict], message_id: int) -> list[int]:
    """The alternatives of a message (itself included), oldest first: messages with its parent and its role."""
    me = rows[message_id]
    return sorted(i for i, r in rows.items() if r["parent_id"] == me["parent_id"] and r["role"] == me["role"])


def current_below(rows: dict[int, dict], message_id: int) -> list[int]:
    """A message and the shown messages below it: what leaves the screen when it is replaced."""
    children: dict[int | None, list[int]] = {}
    for i, r in rows.items():
        if r["is_current"]:
            children.setdefault(r["parent_id"], []).append(i)
    out, todo = [], [message_id]
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(children.get(node, ()))
    return out


def newest_path_from(rows: dict[int, dict], message_id: int) -> list[int]:
    """A message and, below it, the newest child at each level: the branch shown after switching to it."""
    children: dict[int | None, list[int]] = {}
    for i, r in rows.items():
        children.setdefault(r["parent_id"], []).append(i)
    path = [message_id]
    while children.get(path[-1]):
        path.append(max(children[path[-1]]))
    return path
