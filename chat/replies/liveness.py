"""Who is alive: worker heartbeats and per-reply leases in Redis (Redis only; the sweep that acts on them is
``sweep.py``).

A worker refreshes its entry in ``chat:workers`` and a lease ``chat:lease:<message>`` for every reply it is
generating, every ``CHAT_HEARTBEAT_S``; both expire after ``CHAT_LEASE_TTL_S``. A reply that is ``streaming``
without a lease belonged to a worker that died. The same beat writes each reply's token count
(``chat:progress:<message>``) for the review panel's live page: a figure at most one beat old costs one key per
reply per beat, where a write per token would cost a Redis round trip per token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.conf import settings

from chat import metrics
from chat.names import WORKERS_KEY, lease_key, model_workers_key, progress_key, worker_stats_key
from chat.store import client, live_workers


def heartbeat(
    worker: str,
    message_ids: Iterable[int],
    tokens: Mapping[int, int] | None = None,
    stats: Mapping[str, int] | None = None,
    *,
    model: str | None = None,
) -> None:
    """Worker side: say this worker (of ``model``) is alive and still holds these replies; ``tokens``: reply
    tokens generated so far, per reply, where known; ``stats``: its engine's figures for /metrics."""
    ttl = settings.CHAT_LEASE_TTL_S
    tokens = tokens or {}
    pipe = client().pipeline(transaction=False)
    expires = time.time() + ttl
    pipe.zadd(WORKERS_KEY, {worker: expires})
    if model is not None:
        pipe.zadd(model_workers_key(model), {worker: expires})
    if stats is not None:
        metrics.publish_worker_stats(pipe, worker, stats, ttl)
    for message_id in message_ids:
        pipe.set(lease_key(message_id), worker, ex=ttl)
        if message_id in tokens:
            pipe.set(progress_key(message_id), int(tokens[message_id]), ex=ttl)
    pipe.execute()


def release(message_id: int) -> None:
    """Worker side: the reply is finished; its lease and progress go."""
    client().delete(lease_key(message_id), progress_key(message_id))


@dataclass(frozen=True)
class ReplyProgress:
    """What Redis knows of a reply being generated: the worker holding it and its tokens so far (None:
    unknown, e.g. still queued, or the worker has not beaten since it started)."""

    worker: str | None
    tokens: int | None


def replies_progress(message_ids: list[int]) -> dict[int, ReplyProgress]:
    """The holder and token count of each of these replies, in one round trip (one MGET) however many."""
    if not message_ids:
        return {}
    values = client().mget([lease_key(m) for m in message_ids] + [progress_key(m) for m in message_ids])
    workers, counts = values[: len(message_ids)], values[len(message_ids) :]
    return {
        m: ReplyProgress(worker, int(count) if count is not None else None)
        for m, worker, count in zip(message_ids, workers, counts)
    }


def worker_gone(worker: str, model: str | None = None) -> None:
    """Worker side, at a clean shutdown: stop counting as alive at once."""
    pipe = client().pipeline(transaction=False)
    pipe.zrem(WORKERS_KEY, worker)
    if model is not None:
        pipe.zrem(model_workers_key(model), worker)
    pipe.execute()


def workers_alive(model: str | None = None) -> list[str]:
    """Names of workers whose heartbeat has not expired: every model's, or ``model``'s."""
    return live_workers(client(), model)


def context_window(workers: list[str]) -> int | None:
    """The largest context window (tokens) these workers read, from their heartbeat figures (the workers of one
    model); None when none has said. No reply of theirs costs more: prompt and reply together fit it."""
    if not workers:
        return None
    windows = []
    for raw in client().mget([worker_stats_key(w) for w in workers]):
        try:
            windows.append(int(json.loads(raw)["context_window"]))
        except (TypeError, ValueError, KeyError):  # no figures, or a worker of a release without this one
            continue
    return max(windows, default=None)


def orphaned_reply_ids(candidates: list[int]) -> list[int]:
    """Of these streaming replies, the ones no live worker holds a lease on."""
    if not candidates:
        return []
    held = client().mget([lease_key(m) for m in candidates])
    return [m for m, owner in zip(candidates, held) if owner is None]


def leases_trustworthy() -> bool:
    """False just after Redis (re)started: leases are not back yet, so their absence proves nothing."""
    return client().info("server").get("uptime_in_seconds", 0) >= settings.CHAT_LEASE_TTL_S
