"""The Celery task that writes a reply, and the worker process's signals (load at start, goodbye at shutdown,
read its own queue).

The task's registered name is ``chat.names.GENERATE_REPLY_TASK`` ("inference.tasks.generate_reply"), not this
module's path: tasks queued by an older release carry that name, and web processes send it by name without
importing the model code. Celery finds this module through ``chatsite/celery.py``.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_init, worker_shutdown
from django.conf import settings

from chat import names
from chat.replies import balance, liveness, services
from chat.worker import runtime
from chat.worker.job import ReplyJob, make_title

log = logging.getLogger(__name__)


@worker_init.connect
def _load_at_start(sender=None, **kwargs):
    # The threads pool never forks, so loading here means the first task finds the model ready. Any other pool
    # would fork children after the engine's and link's threads started here: they would inherit dead threads.
    pool = str(getattr(sender, "pool_cls", ""))
    if "thread" not in pool.lower():
        raise RuntimeError(
            f"Start the worker with --pool threads (got {pool or 'the default prefork pool'}): "
            "every task of a process shares the one model it loads."
        )
    runtime.current()


@worker_shutdown.connect
def _say_goodbye(**kwargs):
    held = runtime.loaded()
    if held is not None:
        try:
            liveness.worker_gone(held.name)
        except Exception:
            pass


@shared_task(name=names.GENERATE_REPLY_TASK, ignore_result=True)
def generate_reply(message_id: int, handed: bool = False) -> None:
    """Generate, stream and store one assistant reply; or, on a worker busier than another, hand it to that one
    (``chat/replies/balance.py``; ``handed``: this is such a task, already counted here)."""
    rt = runtime.current()
    if not handed:
        target = balance.take(rt.name)
        if target is not None and _hand_on(message_id, target, rt.name):
            return
    try:
        message = services.reply_claim(message_id=message_id)
        if message is None:
            return  # stopped while queued, or already taken
        job = ReplyJob(message, rt)
        job.run()
        # After the reply's done (sent on commit by reply_finish) and its lease: a title never delays the reply.
        if settings.CHAT_AUTO_TITLE and job.wants_title():
            make_title(job)
    finally:
        balance.give_back(rt.name)


def _hand_on(message_id: int, target: str, me: str) -> bool:
    """Put the task on ``target``'s own queue (its place is counted there already). False, with the count back
    here, when that cannot be done: this worker writes the reply after all."""
    try:
        balance.handed(message_id, target, ttl=settings.CHAT_QUEUE_TIMEOUT_S)
        generate_reply.apply_async(args=[message_id], kwargs={"handed": True}, queue=names.worker_queue(target))
        return True
    except Exception:
        log.warning("could not hand message %s to %s; generating it here", message_id, target, exc_info=True)
        balance.moved_back(target, me)
        return False


@celeryd_after_setup.connect
def _read_own_queue(sender, instance, **kwargs):
    # Besides the shared queue, the queue of tasks another worker handed to this one (chat/replies/balance.py).
    instance.app.amqp.queues.select_add(names.worker_queue(runtime.worker_name()))
