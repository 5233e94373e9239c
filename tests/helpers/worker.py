"""The reply job run as its task runs it, for tests of the worker (chat/worker/): a reply queued and claimed, the
job run over a runtime, and every frame the person's sockets would be sent, from the real channel layer."""

import asyncio

from channels.layers import get_channel_layer

from chat import events
from chat.conversations import services as conversation_services
from chat.replies import services as reply_services
from chat.worker import job as worker_job


class Listener:
    """Every frame a socket of the user showing ``conversation_id`` would receive, from the real channel layer."""

    def __init__(self, user_id, conversation_id=None):
        self.groups = [events.user_group(user_id)]
        if conversation_id is not None:
            self.groups.append(events.conversation_group(conversation_id))

    async def __aenter__(self):
        self.layer = get_channel_layer()
        self.channel = await self.layer.new_channel()
        for group in self.groups:
            await self.layer.group_add(group, self.channel)
        return self

    async def __aexit__(self, *exc):
        for group in self.groups:
            await self.layer.group_discard(group, self.channel)

    async def frames(self, quiet: float = 0.5) -> list[dict]:
        out = []
        while True:
            try:
                out.append(events.as_frame(await asyncio.wait_for(self.layer.receive(self.channel), quiet)))
            except asyncio.TimeoutError:
                return out


def queued_reply(user, content="Hello there", params=None):
    sent = conversation_services.message_send(
        user=user, conversation_id=None, content=content, params=params or {"max_new_tokens": 12}
    )
    return reply_services.reply_claim(message_id=sent.assistant_message.id)


def run_job(user, message, rt):
    """Run one reply job as the task does, collecting what the user's sockets are sent."""

    async def go():
        async with Listener(user.id, message.conversation_id) as listener:
            await asyncio.to_thread(worker_job.ReplyJob(message, rt).run)
            return await listener.frames()

    return asyncio.run(go())


def dones(frames):
    return [f for f in frames if f["type"] == "done"]
