"""Which training workers are alive: each beats into ``chat:training:workers`` (a sorted set, score = when its
heartbeat expires) every ``CHAT_HEARTBEAT_S``, as serving workers do into theirs (``chat/replies/liveness.py``),
and for as long: ``CHAT_LEASE_TTL_S``. A run ``running`` on a worker missing from it belonged to a worker that
died (``chat/training/sweep.py``). Apart from the serving workers' set: a training worker holds no served model.
"""

from __future__ import annotations

import time

from django.conf import settings

from chat.names import TRAINING_WORKERS_KEY
from chat.store import client


def heartbeat(worker: str) -> None:
    """Worker side: this training worker is alive for another ``CHAT_LEASE_TTL_S``."""
    client().zadd(TRAINING_WORKERS_KEY, {worker: time.time() + settings.CHAT_LEASE_TTL_S})


def gone(worker: str) -> None:
    """Worker side, at a clean shutdown: stop counting as alive at once."""
    client().zrem(TRAINING_WORKERS_KEY, worker)


def alive() -> list[str]:
    """Names of the training workers whose heartbeat has not expired; the expired ones are dropped."""
    now = time.time()
    pipe = client().pipeline(transaction=False)
    pipe.zremrangebyscore(TRAINING_WORKERS_KEY, "-inf", now)
    pipe.zrangebyscore(TRAINING_WORKERS_KEY, now, "+inf")
    return [name.decode() if isinstance(name, bytes) else name for name in pipe.execute()[1]]
