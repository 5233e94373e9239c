"""Who is alive: worker heartbeats and per-reply leases in Redis (Redis only; the sweep that acts on them is
``sweep.py``).

A worker refreshes its entry in ``chat:workers`` and a lease ``chat:lease:<message>`` for every reply it is
generating, every ``CHAT_HEARTBEAT_S``; both expire after ``CHAT_LEASE_TTL_S``. A reply that is ``streaming``
without a lease belonged to a worker that died.
"""
from __future__ import annotations

import time

from django.conf import settings

from .redis import WORKERS_KEY, client, lease_key, live_workers


def heartbeat(worker: str, message_ids) -> None:
    """Worker side: say this worker is alive and still holds these replies."""
    ttl = settings.CHAT_LEASE_TTL_S
    pipe = client().pipeline(transaction=False)
    pipe.zadd(WORKERS_KEY, {worker: time.time() + ttl})
    for message_id in message_ids:
        pipe.set(lease_key(message_id), worker, ex=ttl)
    pipe.execute()


def release(message_id: int) -> None:
    """Worker side: the reply is finished; its lease goes."""
    client().delete(lease_key(message_id))


def worker_gone(worker: str) -> None:
    """Worker side, at a clean shutdown: stop counting as alive at once."""
    client().zrem(WORKERS_KEY, worker)


def workers_alive() -> list[str]:
    """Names of workers whose heartbeat has not expired."""
    return live_workers(client())


def orphaned_reply_ids(candidates: list[int]) -> list[int]:
    """Of these streaming replies, the ones no live worker holds a lease on."""
    if not candidates:
        return []
    held = client().mget([lease_key(m) for m in candidates])
    return [m for m, owner in zip(candidates, held) if owner is None]


def leases_trustworthy() -> bool:
    """False just after Redis (re)started: leases are not back yet, so their absence proves nothing."""
    return client().info("server").get("uptime_in_seconds", 0) >= settings.CHAT_LEASE_TTL_S
