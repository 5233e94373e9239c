"""Each reply's stream log: a Redis list of its delta texts, index = the delta's ``seq``.

The worker appends a delta here before it publishes it, so a socket that subscribes late (a reload) reads the
text so far from the log and the rest from the channel layer, and a socket that missed a delta fills the gap
from here. The log expires ``CHAT_STREAM_TTL_S`` after its last append.
"""

from __future__ import annotations

from django.conf import settings

from chat.names import stream_key
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
    """Forget a reply's log (a regenerated reply starts a new one)."""
    await async_client().delete(stream_key(message_id))
