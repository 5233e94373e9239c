"""One reply's frames for an HTTP request, followed the way a websocket follows it.

The follower joins the group of its reply's conversation (``chat.events.conversation_group``: a completion's
conversation holds that one reply), so it hears its own reply's frames and no other reply of the same person, and
then catches up once from the stream log and the database (``catch_up``): what was published before it joined is
there, what comes after reaches the group. ``chat.realtime.delivery.ReplyDelivery`` then does for it what it does
for a socket: deltas once and in seq order, gaps filled from the reply's stream log, a quiet reply checked
against the log and the database, and ``done`` last.

A client that goes away before its reply's end leaves the follower to finish in the background when the key
keeps no text (``forget_once_ended``): it follows the stopped reply to its ``done``, then deletes its log.
"""

from __future__ import annotations

import asyncio
import logging

from channels.layers import get_channel_layer
from django.conf import settings

from chat import events
from chat.realtime.delivery import ReplyDelivery
from chat.replies import streamlog

log = logging.getLogger(__name__)
FRAME_TYPES = ("chat.delta", "chat.done")
# Followers finishing in the background, past the request that started them: a reference is kept, or the loop
# could drop a task that nothing awaits.
_background: set[asyncio.Task] = set()


class ReplyFollower:
    """``async with ReplyFollower() as f``: ``f.follow(message_id, conversation_id)``, ``f.catch_up()``, then
    ``await f.next()`` until a ``done`` frame."""

    def __init__(self):
        self.group: str | None = None
        self.layer = get_channel_layer()
        self.message_id: int | None = None
        self.early: list[dict] = []  # events that came before the reply's id was known
        self.frames: asyncio.Queue[dict] = asyncio.Queue()
        self.channel = None
        self.delivery = None
        self.pump = None

    async def __aenter__(self) -> ReplyFollower:
        self.channel = await self.layer.new_channel("chat.api.")
        self.delivery = ReplyDelivery(self.frames.put)
        self.pump = asyncio.ensure_future(self._pump())
        return self

    async def __aexit__(self, *exc) -> None:
        self.pump.cancel()
        self.delivery.close()
        if self.group is None:
            return
        try:
            await self.layer.group_discard(self.group, self.channel)
        except Exception:  # Redis away: the membership expires by itself
            log.warning("could not leave %s", self.group, exc_info=True)

    async def follow(self, message_id: int, conversation_id: int) -> None:
        """Start delivering ``message_id``'s frames (published to ``conversation_id``'s group), those that came
        early first."""
        self.group = events.conversation_group(conversation_id)
        await self.layer.group_add(self.group, self.channel)
        self.message_id = message_id
        self.delivery.announced(message_id)  # a socket's catch-up would otherwise send a message frame first
        early, self.early = self.early, []
        for event in early:
            await self._feed(event)

    async def catch_up(self) -> None:
        """Send what the reply's stream log holds and, if it has ended, its ``done``: the frames published before
        ``follow`` joined the group (a reply that failed at once) come now rather than at the watchdog's round."""
        await self.delivery.catch_up(self.message_id)

    async def next(self) -> dict:
        """The next frame of the reply: a ``delta`` or, last, ``done``."""
        while True:
            frame = await self.frames.get()
            if frame["type"] in ("delta", "done"):
                return frame

    async def forget_log(self) -> None:
        """Delete the reply's stream log (its key keeps no text, and the reply has ended)."""
        try:
            await streamlog.clear(self.message_id)
        except Exception:  # it expires after CHAT_STREAM_TTL_S anyway
            log.warning("could not clear the stream log of %s", self.message_id, exc_info=True)

    def forget_once_ended(self, timeout: float | None = None) -> asyncio.Task:
        """In the background, for a client that went away before its reply's end: follow the reply to its
        ``done``, leave, then delete its stream log. Bounded by ``timeout`` (by default two leases and a sweep:
        a reply whose worker died is ended by the sweep once its lease expires; past that, the log's own expiry
        is the last resort). Every way it can end is logged with the reply's id; none leaves a task exception
        nobody retrieves."""
        if timeout is None:
            timeout = 2 * settings.CHAT_LEASE_TTL_S + settings.CHAT_SWEEP_INTERVAL_S
        task = asyncio.ensure_future(self._forget_once_ended(timeout))
        _background.add(task)
        task.add_done_callback(_background.discard)
        return task

    async def _forget_once_ended(self, timeout: float) -> None:
        ended = False
        try:
            await asyncio.wait_for(self._until_done(), timeout)
            ended = True
        except asyncio.TimeoutError:
            log.warning("reply %s of a client that went away did not end in time; its log expires", self.message_id)
        except Exception:
            log.warning(
                "following reply %s of a client that went away failed; its log expires", self.message_id, exc_info=True
            )
        try:
            await self.__aexit__(None, None, None)
        except Exception:
            log.warning("could not leave the group of reply %s", self.message_id, exc_info=True)
        if ended:
            await self.forget_log()

    async def _until_done(self) -> None:
        while (await self.next())["type"] != "done":
            pass

    async def _pump(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: the delivery's watchdog catches up from the log and the database
                log.warning("follower receive failed; retrying", exc_info=True)
                await asyncio.sleep(1)
                continue
            if event.get("type") not in FRAME_TYPES:
                continue
            if self.message_id is None:
                self.early.append(event)
            else:
                await self._feed(event)

    async def _feed(self, event: dict) -> None:
        if event.get("message") != self.message_id:
            return
        if event["type"] == "chat.delta":
            await self.delivery.delta(event["message"], event["seq"], event["text"])
        else:
            await self.delivery.done(events.as_frame(event))
