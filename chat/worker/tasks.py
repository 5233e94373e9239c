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
from chat.replies import balance, catalog, liveness, services
from chat.worker import runtime
from chat.worker.job import ReplyJob, make_title

log = logging.getLogger(__name__)


def _serving() -> bool:
    """Whether this worker process serves a model (not the training worker, ``chat/worker/training.py``)."""
    return settings.CHAT_WORKER_ROLE != "training"


@worker_init.connect
def _load_at_start(sender=None, **kwargs):
    if not _serving():
        return  # the training worker loads a base model per run, never the served one
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
            liveness.worker_gone(held.name, held.model)
        except Exception:
            pass


@shared_task(name=names.GENERATE_REPLY_TASK, ignore_result=True)
def generate_reply(message_id: int, handed: bool = False, model: str | None = None) -> None:
    """Generate, stream and store one assistant reply of ``model`` (this worker's); or, on a worker busier than
    another of the same model, hand it to that one (``chat/replies/balance.py``; ``handed``: this is such a
    task, already counted here). A task for another model (``model`` None: queued by an earlier release on the
    shared queue, read by the default model's workers) goes to its model's queue unclaimed."""
    rt = runtime.current()
    if (model is None or catalog.worker_model(model) != rt.model) and _rerouted(message_id, rt.model):
        return
    if not handed:
        target = balance.take(rt.name, rt.model)
        if target is not None and _hand_on(message_id, target, rt.name):
            return
    try:
        message = services.reply_claim(message_id=message_id, worker=rt.name)
        if message is None:
            return  # stopped while queued, or already taken
        job = ReplyJob(message, rt)
        job.run()
        # After the reply's done (sent on commit by reply_finish) and its lease: a title never delays the reply.
        if settings.CHAT_AUTO_TITLE and job.wants_title():
            make_title(job)
    finally:
        balance.give_back(rt.name)


def _rerouted(message_id: int, mine: str) -> bool:
    """A reply of another model than ``mine``: queue it for that model (True); of mine after all: False."""
    wanted = services.reply_model(message_id=message_id)
    if wanted is None or catalog.worker_model(wanted or settings.CHAT_DEFAULT_MODEL) == mine:
        return False
    services.reply_dispatch(message_id=message_id, model=wanted)
    return True


def _hand_on(message_id: int, target: str, me: str) -> bool:
    """Put the task on ``target``'s own queue (its place is counted there already). False, with the count back
    here, when that cannot be done: this worker writes the reply after all."""
    try:
        balance.handed(message_id, target, ttl=settings.CHAT_QUEUE_TIMEOUT_S)
        generate_reply.apply_async(
            args=[message_id],
            kwargs={"handed": True, "model": runtime.current().model},
            queue=names.worker_queue(target),
        )
        return True
    except Exception:
        log.warning("could not hand message %s to %s; generating it here", message_id, target, exc_info=True)
        balance.moved_back(target, me)
        return False


@celeryd_after_setup.connect
def _read_own_queue(sender, instance, **kwargs):
    if not _serving():
        return  # the training worker reads the training queue only
    # Its model's queue (whatever -Q said: a unit of an earlier release says only the shared one), and the queue
    # of tasks another worker of its model handed to this one (chat/replies/balance.py).
    instance.app.amqp.queues.select_add(names.model_queue(settings.CHAT_WORKER_MODEL))
    instance.app.amqp.queues.select_add(names.worker_queue(runtime.worker_name()))
