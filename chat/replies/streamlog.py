"""Each reply's stream log: a Redis list of its delta texts, index = the delta's ``seq``.

The worker appends a delta here before it publishes it, so a socket that subscribes late (a reload) reads the
text so far from the log and the rest from the channel layer, and a socket that missed a delta fills the gap
from here. The log expires ``CHAT_STREAM_TTL_S`` after its last append.

Beside it, a reply still waiting for a row keeps the last place it was told (``queued`` frames,
chat/worker/places.py), so a page reloaded while it waits shows "3 replies ahead of yours" again at once rather
than nothing until the place next changes. It goes when the reply's text starts (or the reply ends).
"""

from __future__ import annotations

from django.conf import settings

from chat.names import place_key, stream_key
from chat.store import async_client, client


async def read_range(message_id: int, first: int, last: int) -> list[str]:
    """Delta texts ``first``..``last`` (inclusive; -1 = to the end)."""
    return await async_client().lrange(stream_key(message_id), first, last)


async def read_snapshot(message_id: int) -> tuple[str, int]:
    """The text streamed so far and the seq of its last delta (-1 when none)."""
    pieces = await read_range(message_id, 0, -1)
    return "".join(pieces), len(pieces) - 1


def read_text_sync(message_id: int) -> str | None:
    """The text streamed so far, from sync code (the sweep); None when the log is gone."""
    pieces = client().lrange(stream_key(message_id), 0, -1)
    return "".join(pieces) if pieces else None


async def append(message_id: int, seq: int, pieces: list[str]) -> None:
    """Log delta ``seq`` (``pieces[seq]``). When the log is shorter than ``seq`` (Redis restarted without
    persistence and lost it), write it again whole from ``pieces``."""
    key = stream_key(message_id)
    redis = async_client()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.rpush(key, pieces[seq])
        pipe.expire(key, settings.CHAT_STREAM_TTL_S)
        length, _ = await pipe.execute()
    if length != seq + 1:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.rpush(key, *pieces[: seq + 1])
            pipe.expire(key, settings.CHAT_STREAM_TTL_S)
            await pipe.execute()


async def clear(message_id: int) -> None:
    """Forget a reply's log and place (a regenerated, continued or retried reply starts anew: a place left by a
    worker that died while it waited must not show)."""
    await async_client().delete(stream_key(message_id), place_key(message_id))


async def set_place(message_id: int, ahead: int) -> None:
    await async_client().set(place_key(message_id), ahead, ex=settings.CHAT_STREAM_TTL_S)


async def read_place(message_id: int) -> int | None:
    """The waiting reply's last published place; None when it is not waiting (or was never told one)."""
    value = await async_client().get(place_key(message_id))
    return int(value) if value is not None else None


async def clear_place(message_id: int) -> None:
    await async_client().delete(place_key(message_id))
