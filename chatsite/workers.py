"""The launcher's Celery workers: the command line and environment of a serving worker (one model each) and of
the training worker (the ``training`` queue, ``docs/improvement-loop.md``), and starting them as children.
Free of Django, like the launcher (``chatsite/stack.py``) that uses it."""

from __future__ import annotations

import os
import subprocess
from typing import Mapping

from chat import names
from chatsite import processes
from chatsite.launcher_settings import ROOT, LauncherSettings
from chatsite.processes import BIN

# What the training worker's environment says it is (settings.CHAT_WORKER_ROLE): its process then loads no
# served model at start and reads only the training queue (chat/worker/tasks.py, chat/worker/training.py).
TRAINING_ROLE = "training"


def worker_queues(conf: LauncherSettings, model: str) -> str:
    """The queues a worker of ``model`` reads (its own is added at start): its model's, and for the default
    model also the shared one, where an earlier release queued every reply."""
    queues = [names.model_queue(model)]
    if model == conf.default_model:
        queues.append(names.SHARED_QUEUE)
    return ",".join(queues)


def worker_args(
    conf: LauncherSettings, *, concurrency: int | None = None, name: str = "inference", model: str | None = None
) -> list[str]:
    """One Celery worker process's command line (of ``model``, default: CHAT_WORKER_MODEL's): the threads pool,
    so its tasks share the one model it loads."""
    return celery_worker(
        conf,
        worker_queues(conf, model or conf.worker_model),
        "threads",
        concurrency or conf.worker_concurrency,
        f"{name}-%i@%h",
    )


def celery_worker(conf: LauncherSettings, queues: str, pool: str, concurrency: int, name: str) -> list[str]:
    """A Celery worker's command line: these queues, this pool; no gossip or mingle (workers need no word of
    each other: Redis keeps what they share)."""
    return [
        str(BIN / "celery"),
        "-A",
        "chatsite",
        *(["--quiet"] if conf.json_logs else []),  # no text banner
        "worker",
        "-Q",
        queues,
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        conf.log_level,
        "-n",
        name,
        "--without-gossip",
        "--without-mingle",
    ]


def worker_env(env: Mapping[str, str], conf: LauncherSettings, index: int, model: str | None = None) -> dict:
    """The environment of the launcher's worker ``index`` (0-based, over every model's workers), holding
    ``model`` (CHAT_WORKER_MODEL): with CHAT_WORKER_GPUS, its CUDA_VISIBLE_DEVICES is entry ``index`` of the list,
    wrapping round (``0,1`` with WORKERS=4 puts two workers on each GPU), so each process sees its one GPU as
    ``cuda:0``; without it, the launcher's own environment."""
    out = dict(env)
    if model is not None:
        out["CHAT_WORKER_MODEL"] = model
    if conf.worker_gpus:
        out["CUDA_VISIBLE_DEVICES"] = conf.worker_gpus[index % len(conf.worker_gpus)]
    return out


def start_worker(
    env: dict, *, concurrency: int | None = None, name: str = "inference", model: str | None = None, **popen
) -> subprocess.Popen:
    """A worker (``worker_args``) as a child; ``model``: the one it holds (else the environment's)."""
    if model is not None:
        env = {**env, "CHAT_WORKER_MODEL": model}
    args = worker_args(LauncherSettings.from_env(env), concurrency=concurrency, name=name)
    return processes.popen(args, cwd=ROOT, env=env, **popen)


def service_env(env: Mapping[str, str], conf: LauncherSettings, role: str) -> dict:
    """The environment of one process a service manager starts (``serve``). A worker's torch threads: there
    ``WORKERS`` is this host's worker instances, whichever models they hold (a host's worker.env names its
    model), so each takes cores // WORKERS; settings' own default divides by every served model's workers, as
    ``make run`` starts them all on one host, which would leave a host serving one model of two half idle."""
    out = dict(env)
    if role == "worker" and not out.get("CHAT_TORCH_THREADS"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        out["CHAT_TORCH_THREADS"] = str(max(1, cores // conf.workers))
    return out


def training_worker_args(conf: LauncherSettings, *, name: str = "training") -> list[str]:
    """The training worker's command line: the ``training`` queue only, one run at a time (the solo pool: a run
    uses every core it is given, and a second at once would only halve both)."""
    return celery_worker(conf, names.TRAINING_QUEUE, "solo", 1, f"{name}@%h")


def training_worker_env(env: Mapping[str, str]) -> dict:
    """The training worker's environment: the launcher's, marked as the training role."""
    return {**env, "CHAT_WORKER_ROLE": TRAINING_ROLE}


def start_training_worker(env: dict, *, name: str = "training", **kwargs) -> subprocess.Popen:
    """The training worker (``training_worker_args``) as a child."""
    env = training_worker_env(env)
    return processes.popen(training_worker_args(LauncherSettings.from_env(env), name=name), cwd=ROOT, env=env, **kwargs)
