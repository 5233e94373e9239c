"""`make run` refuses, with a sentence and before it starts anything, what would leave it half working: a port
another program holds (Daphne would fail to listen and be restarted forever while the readiness check found the
other program answering), and a second launcher of the same embedded Redis (two servers on one append-only file)."""

import fcntl
import signal
import socket

import pytest

from chatsite import stack
from tests.launcher.conftest import READY


def test_a_port_another_program_holds_is_refused_before_anything_starts(launcher_env, start_launcher):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        launcher = start_launcher({**launcher_env, "PORT": str(port)})
        assert launcher.proc.wait(60) == 2
    log = launcher.log()
    assert f"Port {port} on 127.0.0.1 is in use by another program: stop it, or start on another port" in log
    assert "running (pid" not in log and READY not in log  # no Redis, worker or Daphne was started


def test_a_second_launcher_of_the_same_embedded_redis_is_refused(launcher_env, start_launcher, tmp_path):
    """The first launcher's lock stands in for it (a whole stack would take a minute to start): held, the
    second one says so and starts nothing; let go, the directory is free again."""
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir(mode=0o700)
    with open(redis_dir / "launcher.lock", "a+") as first:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        second = start_launcher({**launcher_env, "CHAT_REDIS_DIR": str(redis_dir)})
        assert second.proc.wait(60) == 2
    log = second.log()
    assert f"Another `make run` is already running with the embedded Redis in {redis_dir}: stop it first" in log
    assert "running (pid" not in log and not (redis_dir / "redis.url").exists()
    with open(redis_dir / "launcher.lock", "a+") as again:  # the refused launcher held nothing on its way out
        fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_negative_delta_pacing_setting_is_one_sentence_before_anything_starts(launcher_env, start_launcher):
    """Read by the launcher's own check as by settings: not a traceback from each process it would start."""
    launcher = start_launcher({**launcher_env, "CHAT_STREAM_DELTAS_PER_S": "-80"})
    assert launcher.proc.wait(60) == 2
    log = launcher.log()
    assert "CHAT_STREAM_DELTAS_PER_S=-80 cannot be negative: 0 means no bound." in log
    assert "Traceback" not in log and "running (pid" not in log


def test_ctrl_c_stops_a_launcher_that_was_started_with_it_ignored(monkeypatch):
    """A launcher started in the background (`make run &`) inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt of its own: Ctrl-C sent to its group stopped only the worker, which it restarted. The
    launcher sets its own handler before anything starts."""

    class Stop(Exception):
        pass

    def stop(env):
        raise Stop

    before = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(stack, "_settings_or_exit", stop)  # the first step after the handlers are set
    try:
        with pytest.raises(Stop):
            stack.main([])
        assert signal.getsignal(signal.SIGINT) is stack._interrupt
        assert signal.getsignal(signal.SIGTERM) is stack._interrupt
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
