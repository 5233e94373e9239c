"""An even share of the replies for every worker (Redis only).

Every worker of a model takes tasks from its model's one Celery queue, which gives each task to whichever worker asks
first. A worker busy with a prefill asks late, so a burst of eight chats landed six on one worker and two on the
other (measured: 722 against 256 decoded rows), and the busier one set everyone's pace. So each worker counts the
replies it has taken and not yet ended (``chat:load``, a field per worker), and a worker that holds more than the
least busy live worker of its own model hands a new task to that worker's own queue (``inference.<worker>``, which
only that worker reads) with its place already counted there. Handing back to the shared queue would not do: the
busy worker, asking first again, would get it back.

A handed task is tagged ``chat:handed:<message>`` with its worker. If that worker dies before taking it, the sweep
(``stranded``) finds the reply still queued, its worker gone, and queues it again on its model's queue; the next
worker to start removes the dead one's count and queue. With one worker nothing is ever handed on.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from chat.names import LOAD_KEY, handed_key, worker_queue
from chat.store import client, live_workers

log = logging.getLogger(__name__)


def take(worker: str, model: str | None = None) -> str | None:
    """Count one more reply on ``worker``, or, when another live worker of the same model holds fewer, count it
    on the least busy one instead and return that worker's name: the caller hands it the task. Redis away: None
    (the caller generates it; generating beats balancing)."""
    try:
        r = client()
        mine = r.hincrby(LOAD_KEY, worker, 1)
        peers = [w for w in live_workers(r, model) if w != worker]
        if not peers:
            return None
        loads = {w: int(v or 0) for w, v in zip(peers, r.hmget(LOAD_KEY, peers))}
        target = min(loads, key=loads.get)
        if mine - 1 <= loads[target]:  # before this one, no peer had fewer
            return None
        pipe = r.pipeline()
        pipe.hincrby(LOAD_KEY, worker, -1)
        pipe.hincrby(LOAD_KEY, target, 1)
        pipe.execute()
        return target
    except RedisError:
        log.warning("could not count a reply on %s; taking it", worker, exc_info=True)
        return None


def handed(message_id: int, target: str, ttl: int) -> None:
    """Remember that ``target`` was handed this reply, for the sweep should it die first."""
    client().set(handed_key(message_id), target, ex=ttl)


def moved_back(target: str, worker: str) -> None:
    """Undo ``take``'s move of one place from ``worker`` to ``target`` (the hand-over failed)."""
    try:
        pipe = client().pipeline()
        pipe.hincrby(LOAD_KEY, target, -1)
        pipe.hincrby(LOAD_KEY, worker, 1)
        pipe.execute()
    except RedisError:
        log.warning("could not move a reply's count back from %s to %s", target, worker, exc_info=True)


def give_back(worker: str) -> None:
    """A reply counted on ``worker`` has ended (or was never started)."""
    try:
        client().hincrby(LOAD_KEY, worker, -1)
    except RedisError:
        log.warning("could not count a reply off %s", worker, exc_info=True)


def stranded(message_ids: list[int]) -> list[int]:
    """Of these queued replies, those handed to a worker that is no longer alive: each is returned to one caller
    only (its tag is taken), which queues it again."""
    if not message_ids:
        return []
    r = client()
    alive = set(live_workers(r))
    targets = r.mget([handed_key(m) for m in message_ids])
    out = []
    for message_id, target in zip(message_ids, targets):
        if target is not None and target not in alive and r.getdel(handed_key(message_id)) is not None:
            out.append(message_id)
    return out


def start(worker: str, model: str | None = None) -> None:
    """A worker starts: it holds nothing yet; the counts and queues of workers no longer alive go (every
    model's: a dead worker's count is nobody's)."""
    try:
        r = client()
        alive = set(live_workers(r))
        gone = [w for w in r.hkeys(LOAD_KEY) if w not in alive and w != worker]
        pipe = r.pipeline()
        pipe.hset(LOAD_KEY, worker, 0)
        if gone:
            pipe.hdel(LOAD_KEY, *gone)
            pipe.delete(*(worker_queue(w) for w in gone))  # kombu keeps a queue's messages in a list of its name
        pipe.execute()
    except RedisError:
        log.warning("could not reset the reply count of %s", worker, exc_info=True)


def loads(model: str | None = None) -> dict[str, int]:
    """Replies taken and not ended, per live worker (of ``model``)."""
    r = client()
    workers = live_workers(r, model)
    return {w: int(v or 0) for w, v in zip(workers, r.hmget(LOAD_KEY, workers))} if workers else {}
