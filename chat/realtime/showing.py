"""The one conversation a socket shows, and its place in that conversation's channel group.

A tab receives a reply's frames (``message``, ``delta``, ``done``, ``thread``) only from the group of the
conversation it shows, and the list-level frames from its person's group (``chat/events.py``). It joins a
conversation's group when it subscribes to it, or sends into it, and leaves it when it shows another: so a token
reaches as many sockets as tabs look at its conversation, however many tabs its person has open.

Only a conversation of the socket's own person is ever joined: the caller proves ownership first (the subscribe's
lookup, or the service that just wrote into it), and a conversation of someone else is refused as not found.
"""

from __future__ import annotations

import logging

from chat import events
from chat.conversations import selectors
from chat.models import Message

log = logging.getLogger(__name__)


class ShownConversation:
    """``id``: the conversation shown (None: none yet, or a new chat). ``layer``/``channel``: the socket's."""

    def __init__(self, layer, channel: str):
        self.layer, self.channel = layer, channel
        self.id: int | None = None

    async def show(self, conversation_id: int | None) -> bool:
        """Move this socket's place to ``conversation_id``'s group; False when it is there already. The new group
        is joined before the old one is left and before the caller reads the conversation's state: a frame
        published from here on reaches the socket."""
        if conversation_id == self.id:
            return False
        old = self.id
        if conversation_id is not None:
            await self.layer.group_add(events.conversation_group(conversation_id), self.channel)
        self.id = conversation_id  # only once joined: a join that failed (Redis away) is tried again next time
        if old is not None:
            await self.layer.group_discard(events.conversation_group(old), self.channel)
        return True

    async def renew(self) -> None:
        """Join again: a group place expires (a day in channels_redis), and a Redis restart forgets it."""
        if self.id is not None:
            await self.layer.group_add(events.conversation_group(self.id), self.channel)

    async def leave(self) -> None:
        if self.id is not None:
            conversation_id, self.id = self.id, None
            await self.layer.group_discard(events.conversation_group(conversation_id), self.channel)

    def stale(self, event: dict) -> bool:
        """An event a conversation's group carried to this socket while it still showed that conversation, handled
        after it moved on: not for this tab any more."""
        route = event.get(events.ROUTE_KEY)
        return route is not None and route != self.id


def conversation_check(user, conversation_id: int) -> None:
    """Raise ``ChatError(NOT_FOUND)`` unless ``conversation_id`` is one of ``user``'s conversations."""
    selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)


def actives_in(conversation_id: int) -> list[Message]:
    """The conversation's replies being written, oldest first: one, or Compare's two."""
    return selectors.messages_active_in_conversation(conversation_id=conversation_id)


def message_conversation(user, message_id: int) -> int:
    """The conversation of one of ``user``'s messages; ``ChatError(NOT_FOUND)`` for anyone else's."""
    return selectors.message_get_for_user(user=user, message_id=message_id).conversation_id
