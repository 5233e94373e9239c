"""Limits, in one place: frames per person in this process (the `limits` library's moving window, in process
memory: checked before any database or Redis work) and open sockets per user (a Redis sorted set, so the cap
holds across every Daphne process). The per-person cap on active replies is checked inside the send transaction
(``chat/replies/admission.py``, ``require_capacity``); messages per minute and tokens per day are ``quotas.py``."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from chat.names import sockets_key
from chat.store import client

log = logging.getLogger(__name__)
_frame_counts = MemoryStorage()  # tests reset it: user ids repeat from test to test
_frames = MovingWindowRateLimiter(_frame_counts)


def frame_allowed(user_id: int) -> bool:
    """One more frame from this person on this process, within CHAT_FRAME_RATE (e.g. "20/second")? Counted per
    person, not per socket: every frame that needs the database runs on the process's one database thread,
    and a person with ten sockets counted apart could send ten times the rate and queue everyone else's sends
    behind theirs. The count is this process's (in memory): the thread it protects is this process's too."""
    return _frames.hit(parse(settings.CHAT_FRAME_RATE), "frames", str(user_id))


def _stale_after() -> float:
    # A live socket refreshes its entry every CHAT_SOCKET_REFRESH_S; one whose process died without saying
    # goodbye (a crash, a restart) stops counting after three missed refreshes.
    return 3 * settings.CHAT_SOCKET_REFRESH_S


def socket_open(user_id: int, channel_name: str) -> bool:
    """Count a new socket for the user; False when the user is at CHAT_MAX_SOCKETS_PER_USER already."""
    key = sockets_key(user_id)
    now = time.time()
    pipe = client().pipeline()
    pipe.zremrangebyscore(key, 0, now - _stale_after())
    pipe.zadd(key, {channel_name: now})
    pipe.zcard(key)
    pipe.expire(key, int(_stale_after()) + 1)
    count = pipe.execute()[2]
    if count > settings.CHAT_MAX_SOCKETS_PER_USER:
        client().zrem(key, channel_name)
        return False
    return True


def socket_refresh(user_id: int, channel_name: str) -> None:
    """A live socket says it is still open."""
    key = sockets_key(user_id)
    pipe = client().pipeline()
    pipe.zadd(key, {channel_name: time.time()}, xx=True)
    pipe.expire(key, int(_stale_after()) + 1)
    pipe.execute()


def socket_closed(user_id: int, channel_name: str) -> None:
    client().zrem(sockets_key(user_id), channel_name)


def sockets_forget(user_id: int) -> None:
    """Forget a deleted person's socket count. A Redis failure is logged: the key expires by itself within
    three socket refreshes."""
    try:
        client().delete(sockets_key(user_id))
    except RedisError:
        log.warning("could not forget the sockets of deleted user %s", user_id, exc_info=True)
