"""Delivery of replies to one socket: every delta once, in seq order, then ``done`` — even when the channel
layer loses or reorders a message.

channels_redis can drop or re-order a message when a receiving coroutine of the same process is cancelled
(a tab closing) at the wrong moment: BZPOPMIN has popped it on the server when the cancel lands. So the
socket does not trust the layer alone: a gap in seqs is filled from the reply's stream log (the worker logs
each delta before publishing it), and a watchdog looks at every reply that has been quiet for
``WATCH_INTERVAL_S``: it sends what the log holds beyond what was sent and, if the reply has ended, its
``done`` from the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import NamedTuple

from channels.db import database_sync_to_async

from chat import events
from chat.models import Message
from chat.replies import selectors, streamlog

log = logging.getLogger(__name__)
WATCH_INTERVAL_S = 2.0
FINISHED_KEPT = 256


class _Ended(NamedTuple):
    """How a reply this socket sent the ``done`` of ended: its text's length, status and finish reason."""

    length: int
    status: str
    finish_reason: str


class _ReplyCursor:
    """One reply on one socket: the next seq to send, deltas that came early, when it was last heard of."""

    __slots__ = ("next", "held", "heard", "announced")

    def __init__(self, next_seq: int = 0, announced: bool = False):
        self.next = next_seq
        self.held: dict[int, str] = {}
        self.heard = time.monotonic()
        self.announced = announced


class ReplyDelivery:
    """The replies one socket shows, each with its cursor; ``send_json`` is the socket's."""

    def __init__(self, send_json):
        self.send_json = send_json
        self.cursors: dict[int, _ReplyCursor] = {}
        # The replies whose ``done`` this socket sent, each with how it ended (late events of these are dropped);
        # the newest FINISHED_KEPT, oldest first.
        self.finished: dict[int, _Ended] = {}
        self.lock = asyncio.Lock()  # one sender at a time: frames leave in order
        self.watchdog = asyncio.ensure_future(self._watch())

    def close(self) -> None:
        self.watchdog.cancel()

    def expect(self, message_id: int, next_seq: int = 0, announced: bool = False) -> None:
        """Start following a reply (this socket started it, subscribed to it, or was told of it)."""
        if message_id not in self.finished and message_id not in self.cursors:
            self.cursors[message_id] = _ReplyCursor(next_seq, announced)

    def forget_all(self) -> None:
        """Stop following every reply (the socket shows another conversation now): the watchdog must not go on
        sending the text of replies the tab no longer shows."""
        self.cursors.clear()

    def restart(self, message_id: int) -> None:
        """Follow a reply from seq 0 again, even one whose ``done`` this socket has sent: a continued reply
        (chat/conversations/continuation.py) streams anew under its id."""
        if message_id in self.finished:
            del self.finished[message_id]
            self.cursors.pop(message_id, None)
        self.expect(message_id)

    def queued(self, message_id: int, text: str) -> bool:
        """A reply's ``message`` frame in the queued state came through the layer: a new reply (queued empty), or
        a continued one (queued again with its text so far), whose stream starts again under its id. False when
        the frame is stale: this socket has already sent that reply's ``done``, and the frame is not a Continue
        of it — a new reply never streams twice, and Continue takes only a reply that ended complete at its
        length bound and queues it with at least the text that ``done`` carried. That happens when the socket
        handles the frame late (a slow consumer whose watchdog ended the reply from the database first, or the
        layer re-ordering): following the reply again sent its ``done`` twice, and the tab believed a reply still
        running that had ended (a person's next send refused as busy). A stale frame goes out as the reply now
        stands instead (``as_it_stands``)."""
        ended = self.finished.get(message_id)
        if ended is not None:
            continued = ended.status == Message.Status.COMPLETE and ended.finish_reason == Message.FinishReason.LENGTH
            if not (text and continued and len(text) >= ended.length):
                return False
            self.restart(message_id)
        self.announced(message_id)
        return True

    async def as_it_stands(self, frame: dict) -> dict | None:
        """A stale queued ``message`` frame (``queued`` said False) rebuilt from the stored reply, which has ended:
        what the frame carries for the thread still applies — the reply it replaces (Regenerate), Compare's
        siblings, the sending tab's client id — and the reply shows as it ended, not as waiting. None when there is
        nothing to show (deleted, or running again: its own frames follow)."""
        message = await database_sync_to_async(selectors.reply_for_delivery)(message_id=frame["message"]["id"])
        if message is None or message.is_active:
            return None
        payload = events.message_payload(message)
        if "siblings" in frame["message"]:
            payload["siblings"] = frame["message"]["siblings"]
        return {**frame, "message": payload}

    def announced(self, message_id: int) -> None:
        self.expect(message_id)
        if message_id in self.cursors:
            self.cursors[message_id].announced = True

    async def resume(self, message: Message) -> bool:
        """Show a reply in progress from its start (a subscribe): its text so far as one ``message`` frame, then
        its deltas from there on. False when its ``done`` was already sent here (it ended meanwhile)."""
        async with self.lock:  # no delta may overtake the snapshot
            if message.pk in self.finished:
                return False
            text, seq = await streamlog.read_snapshot(message.pk)
            self.cursors.pop(message.pk, None)
            self.expect(message.pk, next_seq=seq + 1, announced=True)
            payload = events.message_payload(message)
            payload["content"] = text
            await self.send_json({"type": "message", "message": payload, "seq": seq})
            ahead = await streamlog.read_place(message.pk)  # (a continued reply waits with text)
            if ahead is not None:  # still waiting for a row: its place, as the worker last told it
                await self.send_json(events.queued_frame(message.pk, message.conversation_id, ahead))
            return True

    async def delta(self, message_id: int, seq: int, text: str) -> None:
        if message_id in self.finished:
            return
        self.expect(message_id)
        cursor = self.cursors[message_id]
        cursor.heard = time.monotonic()
        async with self.lock:
            await self._forward(message_id, cursor, {seq: text})

    async def done(self, frame: dict) -> None:
        """Send the deltas the socket still lacks, then the ``done`` frame, once."""
        message_id = frame["message"]
        async with self.lock:
            if message_id in self.finished:
                return
            cursor = self.cursors.get(message_id)
            if cursor is not None:  # if this fails (Redis away), the cursor stays and the watchdog tries again
                await self._forward(message_id, cursor, {}, to_end=True)
            await self.send_json(frame)
            self.cursors.pop(message_id, None)
            self.finished[message_id] = _Ended(len(frame.get("content") or ""), frame["status"], frame["finish_reason"])
            if len(self.finished) > FINISHED_KEPT:
                del self.finished[next(iter(self.finished))]

    async def _forward(self, message_id: int, cursor: _ReplyCursor, new: dict[int, str], to_end: bool = False) -> None:
        for seq, text in new.items():
            if seq >= cursor.next:
                cursor.held.setdefault(seq, text)
        gap = cursor.held and min(cursor.held) > cursor.next
        if gap or to_end:
            last = min(cursor.held) - 1 if gap and not to_end else -1
            texts = await streamlog.read_range(message_id, cursor.next, last)
            for i, text in enumerate(texts):
                cursor.held.setdefault(cursor.next + i, text)
        while cursor.next in cursor.held:
            seq = cursor.next
            text = cursor.held.pop(seq)
            cursor.next += 1
            await self.send_json(events.delta_frame(message_id, seq, text))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            quiet = [m for m, s in list(self.cursors.items()) if time.monotonic() - s.heard >= WATCH_INTERVAL_S]
            for message_id in quiet:
                try:
                    await self.catch_up(message_id)
                except asyncio.CancelledError:
                    raise
                except Exception:  # Redis or the database away: try again next round
                    log.warning("catch-up of reply %s failed", message_id, exc_info=True)

    async def catch_up(self, message_id: int) -> None:
        cursor = self.cursors.get(message_id)
        if cursor is None:
            return
        cursor.heard = time.monotonic()
        message = await database_sync_to_async(selectors.reply_for_delivery)(message_id=message_id)
        if message is None:
            self.cursors.pop(message_id, None)
            return
        if not cursor.announced:  # the message frame itself was lost
            cursor.announced = True
            await self.send_json(events.message_frame(message))
        if message.is_active:
            async with self.lock:
                await self._forward(message_id, cursor, {}, to_end=True)
        else:
            await self.done(events.done_frame(message))
