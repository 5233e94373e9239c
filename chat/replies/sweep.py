"""The sweep: ends replies whose worker died, and queued ones nobody took in time; queues again a reply handed
to a worker that died before taking it.

Lost tasks are not retried (a retry could race a reply already shown), so the person sees the failure and can
regenerate. Sweeps run in every Daphne process and every worker; ``reply_finish``'s conditional update makes
exactly one of them win, and it alone tells the sockets.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from chat.models import Message
from chat.replies import balance, liveness, selectors, services, streamlog

log = logging.getLogger(__name__)
BATCH = 500
WORKER_DIED = "The worker writing this reply stopped. The text so far is kept; regenerate to try again."
QUEUE_TIMED_OUT = "No worker picked this reply up in time; regenerate to try again."


# Sweeps of other packages run with this one (``also``): a package above this layer (chat/training) registers its
# own from chat/apps.py, so every process that sweeps replies sweeps them too without this module importing it.
_also: list = []


def also(fn) -> None:
    """Run ``fn()`` after every sweep of replies (once per function)."""
    if fn not in _also:
        _also.append(fn)


def sweep() -> list[Message]:
    """End orphaned and timed-out replies, then run the registered sweeps (``also``). Returns the messages this
    sweep ended."""
    for fn in _also:
        try:
            fn()
        except Exception:  # one sweep's failure must not keep the replies' from running
            log.warning("sweep %s failed", getattr(fn, "__qualname__", fn), exc_info=True)
    if not liveness.leases_trustworthy():
        return []
    now = timezone.now()
    ended = []
    started_before = now - timedelta(seconds=settings.CHAT_LEASE_TTL_S)
    streaming = selectors.reply_ids_streaming_since(before=started_before, limit=BATCH)
    for message_id in liveness.orphaned_reply_ids(streaming):
        text = streamlog.read_text_sync(message_id)
        final = services.reply_finish(
            message_id=message_id,
            content=text,
            status=Message.Status.FAILED,
            finish_reason=Message.FinishReason.ERROR,
            error=WORKER_DIED,
        )
        if final:
            ended.append(final)
    # Handed to a worker that died before taking it: queued again for any worker (chat/replies/balance.py).
    handed_before = now - timedelta(seconds=settings.CHAT_HEARTBEAT_S)
    for message_id in balance.stranded(selectors.reply_ids_queued_since(before=handed_before, limit=BATCH)):
        log.warning("reply %s was handed to a worker that died; queued again", message_id)
        services.reply_dispatch(message_id=message_id)
    queued_before = now - timedelta(seconds=settings.CHAT_QUEUE_TIMEOUT_S)
    for message_id in selectors.reply_ids_queued_since(before=queued_before, limit=BATCH):
        final = services.reply_finish(
            message_id=message_id,
            content=None,  # a new reply has none; a continued one keeps its text
            status=Message.Status.FAILED,
            finish_reason=Message.FinishReason.ERROR,
            only_from=(Message.Status.QUEUED,),
            error=QUEUE_TIMED_OUT,
        )
        if final:
            ended.append(final)
    for message in ended:
        log.warning("swept reply %s: %s", message.id, message.error)
    return ended


_sweepers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()


def ensure_sweeper() -> None:
    """Start this web process's periodic sweep (once per event loop), so replies of a dead worker end even
    when no worker is left to sweep.

    It runs in a context of its own, not its caller's: a task copies the context it is created in, and the
    first caller may be an HTTP request (the API), whose context holds Django's per-request thread-sensitive
    executor (asgiref's ``ThreadSensitiveContext``). That executor is shut down when the request ends, and every
    later round failed with "CurrentThreadExecutor already quit or is broken" — the one case the web sweep is
    for (no worker left) was never swept. A copied context would also stamp the caller's person on every line
    the sweep logs (``chat.logs``)."""
    if not settings.CHAT_SWEEP_IN_WEB:
        return
    loop = asyncio.get_running_loop()
    if loop not in _sweepers:
        _sweepers[loop] = loop.create_task(_sweep_forever(), context=contextvars.Context())


async def _sweep_forever() -> None:
    from channels.db import database_sync_to_async

    # Not thread-sensitive: that would put each round in the one thread every socket of this process does its
    # database work in (Channels), queueing their sends and stops behind the sweep's Redis and database work.
    # database_sync_to_async still closes the thread's worn-out database connections around each round.
    sweep_once = database_sync_to_async(sweep, thread_sensitive=False)
    while True:
        await asyncio.sleep(settings.CHAT_SWEEP_INTERVAL_S)
        try:
            await sweep_once()
        except Exception:  # Redis or the database away: try again next round
            log.warning("sweep failed", exc_info=True)
