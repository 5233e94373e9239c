"""The sweep of training runs: a run ``running`` on a training worker whose heartbeat expired belonged to a worker
that died (killed, its host restarted, out of memory); it ends ``failed`` with a sentence saying so, never left
``running``. Run by every sweeper the replies' sweep runs in (Daphne, serving workers: ``chat/replies/sweep.py``
calls the sweeps registered with it, this one by ``chat/apps.py``) and by the training worker itself.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from chat.models import TrainingRun
from chat.replies import liveness as reply_liveness
from chat.training import liveness, selectors, services

log = logging.getLogger(__name__)
WORKER_DIED = (
    "The training worker running it stopped (no heartbeat for {ttl} s: killed, restarted or out of memory); "
    "nothing was saved. Start the run again under a new name."
)


def sweep_runs() -> list[int]:
    """Fail the running runs whose worker is gone. Returns their ids."""
    if not reply_liveness.leases_trustworthy():  # just after a Redis restart no heartbeat is back yet
        return []
    started_before = timezone.now() - timedelta(seconds=settings.CHAT_LEASE_TTL_S)
    running = list(selectors.runs_running().filter(started_at__lt=started_before).values_list("pk", "worker"))
    if not running:
        return []
    alive = set(liveness.alive())
    ended = []
    reason = WORKER_DIED.format(ttl=settings.CHAT_LEASE_TTL_S)
    for run_id, worker in running:
        if worker not in alive and services.run_finish(run_id=run_id, state=TrainingRun.State.FAILED, reason=reason):
            log.warning("training run %s failed: its worker %s is gone", run_id, worker or "(unknown)")
            ended.append(run_id)
    return ended
