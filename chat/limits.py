"""Limits, in one place: frames per socket (the `limits` library's moving window) and open sockets per user
(a Redis sorted set, so the cap holds across every Daphne process)."""
from __future__ import annotations

import time

from django.conf import settings
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from . import liveness

_frames = MovingWindowRateLimiter(MemoryStorage())
SOCKETS_KEY = "chat:sockets:{user}"
# A socket whose process died without saying goodbye stops counting after this long.
SOCKET_STALE_S = 3600


def frame_allowed(channel_name: str) -> bool:
    """One more frame on this socket, within CHAT_FRAME_RATE (e.g. "20/second")?"""
    return _frames.hit(parse(settings.CHAT_FRAME_RATE), "frames", channel_name)


def socket_open(user_id: int, channel_name: str) -> bool:
    """Count a new socket for the user; False when the user is at CHAT_MAX_SOCKETS_PER_USER already."""
    key = SOCKETS_KEY.format(user=int(user_id))
    now = time.time()
    pipe = liveness.client().pipeline()
    pipe.zremrangebyscore(key, 0, now - SOCKET_STALE_S)
    pipe.zadd(key, {channel_name: now})
    pipe.zcard(key)
    pipe.expire(key, SOCKET_STALE_S)
    count = pipe.execute()[2]
    if count > settings.CHAT_MAX_SOCKETS_PER_USER:
        liveness.client().zrem(key, channel_name)
        return False
    return True


def socket_closed(user_id: int, channel_name: str) -> None:
    liveness.client().zrem(SOCKETS_KEY.format(user=int(user_id)), channel_name)
