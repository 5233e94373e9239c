"""The training worker's command line and environment, as `make run` (CHAT_TRAINING=true), the Procfile's
`training` line and the systemd unit start it: the training queue only, one run at a time, marked as the
training role (it then loads no served model and reads no model's queue). The process itself is proven in
tests/chat/training/test_worker_live.py."""

import subprocess
import sys

from chat import names
from chatsite import stack
from chatsite.launcher_settings import LauncherSettings


def test_chat_training_turns_the_training_worker_on():
    assert LauncherSettings.from_env({}).training is False
    assert LauncherSettings.from_env({"CHAT_TRAINING": "true"}).training is True
    assert LauncherSettings.from_env({"CHAT_TRAINING": "0"}).training is False


def test_the_training_worker_reads_the_training_queue_alone_one_run_at_a_time():
    args = stack.training_worker_args(LauncherSettings.from_env({}))
    assert args[args.index("-Q") + 1] == names.TRAINING_QUEUE
    assert args[args.index("--pool") + 1] == "solo" and args[args.index("--concurrency") + 1] == "1"
    assert stack.training_worker_env({"A": "1"}) == {"A": "1", "CHAT_WORKER_ROLE": "training"}


def test_the_unit_and_the_procfile_start_it_through_the_launcher():
    unit = (stack.ROOT / "deploy" / "systemd" / "chat-training.service").read_text()
    assert "ExecStart=/srv/chat-server/.venv/bin/python -m chatsite.stack training" in unit
    assert "python -m chatsite.stack training" in (stack.ROOT / "deploy" / "Procfile").read_text()
    usage = subprocess.run(
        [sys.executable, "-m", "chatsite.stack", "bogus"], capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == 2 and "web|worker|training" in usage.stderr
