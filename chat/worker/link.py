"""A worker process's one event loop: publishing deltas and frames, and hearing stops.

Worker threads are plain threads; opening an event loop per call (what ``async_to_sync`` does outside a loop)
would open a Redis connection per token. ``WorkerLink`` keeps one loop in a daemon thread and hands it
coroutines, riding out a Redis restart (``call_patiently``). It also listens on the workers' group for stops.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import Future

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from django.conf import settings
from redis.exceptions import RedisError

from chat import events, names
from chat.replies import streamlog

log = logging.getLogger(__name__)
# The least time one attempt gets, even at the end of the grace: a healthy publish takes milliseconds.
ATTEMPT_FLOOR_S = 1.0


class WorkerLink:
    """The loop thread, the channel layer instance it receives on, and the publishing calls."""

    def __init__(self, on_cancel=None, on_reconnect=None):
        self.on_cancel = on_cancel
        self.on_reconnect = on_reconnect  # called when Redis answers again after an outage
        # Its own layer instance: channels_redis allows one receiving loop per instance, and this loop
        # receives stops while other code in the process (tests, a shell) may use the default one.
        self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="worker-link", daemon=True)
        self._thread.start()
        self._listener = self._submit(self._listen())

    def close(self) -> None:
        """Stop listening and stop the loop (tests; a worker keeps its link for life)."""
        self._listener.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            # Closing lets channels_redis close this loop's Redis connections now; a loop left open did it when
            # collected, inside whatever loop then ran, and failed there (a warning at the end of the tests).
            self.loop.close()

    def _submit(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro, timeout: float = 30.0):
        """Run a coroutine on the link's loop and wait for its result; on timeout it is cancelled, so it does
        not go on running on the loop."""
        future = self._submit(coro)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def call_patiently(self, make_coro):
        """Like ``call``, riding out a Redis restart: retried for up to ``CHAT_REDIS_GRACE_S``. The engine
        keeps generating meanwhile; what it produced is sent in one piece when Redis is back. Each attempt is
        bounded by what is left of the grace (a blackholed connection would otherwise hang far longer), so the
        worker gives up before its lease can expire."""
        deadline = time.monotonic() + settings.CHAT_REDIS_GRACE_S
        failed = False
        while True:
            try:
                result = self.call(make_coro(), timeout=max(ATTEMPT_FLOOR_S, deadline - time.monotonic()))
            except (RedisError, OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                log.warning("Redis unreachable; retrying")
                failed = True
                time.sleep(0.5)
                continue
            if failed and self.on_reconnect:
                self.on_reconnect()
            return result

    async def _listen(self) -> None:
        layer = self.layer
        channel = await layer.new_channel(names.WORKER_CHANNEL_PREFIX)
        last_join = None
        while True:
            try:
                now = self.loop.time()
                # Renew membership often: it expires after a day, and a Redis restart without persistence
                # forgets it at once.
                if last_join is None or now - last_join > 50:
                    await layer.group_add(names.WORKERS_GROUP, channel)
                    last_join = now
                event = await asyncio.wait_for(layer.receive(channel), timeout=60)
                if event.get("type") == names.REPLY_CANCEL_EVENT and self.on_cancel:
                    self.on_cancel(int(event["message"]))
            except asyncio.TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: keep trying, a worker must not lose its ears
                log.warning("worker link: channel layer receive failed; retrying", exc_info=True)
                last_join = None
                await asyncio.sleep(1)

    async def _delta(self, conversation_id: int, message_id: int, seq: int, pieces: list[str]) -> None:
        await streamlog.append(message_id, seq, pieces)
        frame = events.delta_frame(message_id, seq, pieces[seq])
        await events.send_to_conversation(conversation_id, frame, self.layer)

    def delta(self, conversation_id: int, message_id: int, seq: int, pieces: list[str]) -> None:
        """Log and publish delta ``seq`` (``pieces[seq]``; earlier pieces repair a lost log) to the sockets showing
        the reply's conversation (not every tab of its person). Waits, so deltas stay in order."""
        self.call_patiently(lambda: self._delta(conversation_id, message_id, seq, pieces))

    async def _queued(self, user_id: int, message_id: int, conversation_id: int, ahead: int) -> None:
        await streamlog.set_place(message_id, ahead)  # first: a page reloaded after the frame still finds it
        await events.send_to_user(user_id, events.queued_frame(message_id, conversation_id, ahead), self.layer)

    def queued(self, user_id: int, message_id: int, conversation_id: int, ahead: int) -> None:
        """Publish a waiting reply's place and keep it (only the newest) for a page that subscribes later; a lost
        one is corrected by the next (or by the reply's first delta)."""
        self.call_patiently(lambda: self._queued(user_id, message_id, conversation_id, ahead))

    def clear_place(self, message_id: int) -> None:
        """The reply stopped waiting (its text started, or it ended): a page loaded now shows no place. Never
        raises: a place is a courtesy, and a stale one expires with the stream log (or goes when it restarts)."""
        try:
            self.call_patiently(lambda: streamlog.clear_place(message_id))
        except Exception:
            log.warning("could not take back the place of message %s", message_id, exc_info=True)

    def clear_stream(self, message_id: int) -> None:
        """Forget a reply's stream log (a regenerated reply starts a new one)."""
        self.call_patiently(lambda: streamlog.clear(message_id))
