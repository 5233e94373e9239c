"""The training queue and a real training worker process (``python -m chatsite.stack training``'s command line,
as ``make run`` starts it with CHAT_TRAINING=true): ``manage.py train_adapter --wait`` returns 0 and prints the
served name last when its run is done, 1 when it failed (the name still last, the reason on stderr); a worker
killed mid-run leaves its run failed with a reason — by the sweep of the worker started in its place — never
stuck ``running``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from django.db import connection

from chat import names
from chat.models import TrainingRun
from chatsite import stack
from tests.chat.training.conftest import BASE
from tests.helpers.live import _database_url, _wait_for_log

pytestmark = pytest.mark.e2e
State = TrainingRun.State


def _command(env, *args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "train_adapter", *args],
        cwd=stack.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _start_worker(env, log):
    proc = stack.start_training_worker(env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    _wait_for_log(log, "ready.", proc)
    return proc


@pytest.mark.django_db(transaction=True)
def test_train_adapter_waits_for_the_training_worker_and_a_killed_worker_leaves_its_run_failed(
    gold_conversations, tiny_base_folder, tmp_path, settings
):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DATABASE_URL": _database_url(connection.settings_dict),
        "CHAT_MODELS": f"{BASE}={tiny_base_folder}",
        "CHAT_ADAPTER_DIR": str(tmp_path / "adapters"),
        "CHAT_TRAINING_HYPERPARAMETERS": json.dumps({"epochs": 1, "max_length": 64}),
        "CHAT_TRAINING_EVAL_TOKENS": "4",
        "CHAT_TRAINING_PROGRESS_S": "0",
        "CHAT_HEARTBEAT_S": "0.5",
        "CHAT_LEASE_TTL_S": "3",
        "CHAT_SWEEP_INTERVAL_S": "1",
        "PYTHONUNBUFFERED": "1",
    }
    redis.Redis.from_url(env["REDIS_URL"]).delete(names.TRAINING_QUEUE)
    worker = _start_worker(env, tmp_path / "training.log")
    replacement = None
    try:
        done = _command(env, "good", "--base", BASE, "--wait", "--poll", "0.2")
        assert done.returncode == 0, done.stderr + (tmp_path / "training.log").read_text()[-3000:]
        lines = done.stdout.strip().splitlines()
        assert lines[-1] == f"{BASE}+good" and lines[-2].startswith("done: step 2/2")
        run = TrainingRun.objects.get(name="good")
        assert run.state == State.DONE and run.worker.endswith(f"-{worker.pid}")

        failed = _command(env, "bad", "--base", BASE, "--wait", "--poll", "0.2", "--hyperparameters", '{"bogus": 1}')
        assert failed.returncode == 1
        assert failed.stdout.strip().splitlines()[-1] == f"{BASE}+bad"
        assert "failed: The run's hyperparameters cannot be used: unknown hyperparameters: bogus." in failed.stderr

        # A long run, and its worker killed while it trains: the worker started in its place fails it.
        long = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "train_adapter",
                "long",
                "--base",
                BASE,
                "--hyperparameters",
                '{"epochs": 5000}',
            ],
            cwd=stack.ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert long.returncode == 0, long.stderr
        run = TrainingRun.objects.get(name="long")
        deadline = time.monotonic() + 120
        while (run.progress or {}).get("step", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
            run.refresh_from_db()
        assert run.state == State.RUNNING
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        replacement = _start_worker(env, tmp_path / "training2.log")
        deadline = time.monotonic() + 60
        while run.state == State.RUNNING and time.monotonic() < deadline:
            time.sleep(0.5)
            run.refresh_from_db()
        assert run.state == State.FAILED
        assert run.reason.startswith("The training worker running it stopped")
    finally:
        stack.stop(worker, replacement)
