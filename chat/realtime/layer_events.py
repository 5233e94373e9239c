"""The chat socket's handlers of channel-layer events (``chat/events.py``): each forwards its frame, or hands a
reply's frames to the socket's delivery (``chat/realtime/delivery.py``).

A socket is in two groups (``chat/realtime/showing.py``): its person's, and the one conversation's it shows. An
event a conversation's group carried while the socket still showed that conversation, handled after it moved on,
is dropped (``ShownConversation.stale``), and so are replies of conversations it does not show: no delta reaches a
tab that does not look at its conversation.
"""

from __future__ import annotations

from chat import events
from chat.models import Message


class LayerEvents:
    """Mixed into ``ChatConsumer``: uses its ``send_json``, ``delivery`` and ``shown``."""

    async def chat_conversation(self, event):
        await self.send_json(events.as_frame(event))

    # These frames carry no reply text: forwarded as they come. (An event with no handler here ends the socket:
    # Channels raises "No handler for message type".)
    chat_feedback = chat_settings = chat_deleted = chat_compared = chat_organised = chat_conversation

    async def chat_thread(self, event):
        if not self.shown.stale(event):
            await self.send_json(events.as_frame(event))

    async def chat_queued(self, event):
        # A waiting reply's place (chat/worker/places.py): for the tab showing its conversation, like its deltas.
        if not self.shown.stale(event):
            await self.send_json(events.as_frame(event))

    async def chat_activity(self, event):
        # The tab showing that conversation has its message and done frames: the activity is for the others.
        if event["conversation"] != self.shown.id:
            await self.send_json(events.as_frame(event))

    async def chat_message(self, event):
        if self.shown.stale(event):
            return
        frame = events.as_frame(event)
        # A message of a conversation this tab does not show comes only as the first frames of a new conversation
        # (the person's group carries those): forwarded for the list, its reply not followed.
        shown = frame["message"]["conversation"] == self.shown.id
        if shown and frame["message"]["role"] == Message.Role.ASSISTANT:
            message = frame["message"]
            if message["status"] == Message.Status.QUEUED:  # new, or continued (its stream starts again)
                if not self.delivery.queued(message["id"], message["content"]):
                    # Stale: the reply has ended on this tab since (ReplyDelivery.queued); sent as it ended.
                    frame = await self.delivery.as_it_stands(frame)
                    if frame is not None:
                        await self.send_json(frame)
                    return
            else:
                self.delivery.announced(message["id"])
        await self.send_json(frame)

    async def chat_delta(self, event):
        if not self.shown.stale(event):
            await self.delivery.delta(event["message"], event["seq"], event["text"])

    async def chat_done(self, event):
        if not self.shown.stale(event):
            await self.delivery.done(events.as_frame(event))
