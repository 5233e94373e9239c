"""The real launcher, ``python -m chatsite.stack``, as a child process with its own port, Redis directory and
SQLite file; whatever it started is killed when a test ends, however it ends."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatsite import stack
from chatsite.embedded import recorded_redis_url

READY = "Chat server ready"


class Launcher:
    """A running launcher; its stdout and stderr (and its children's) go to one log file."""

    def __init__(self, env: dict, log_path: Path):
        self.log_path = log_path
        # Its own session: Ctrl-C as a terminal sends it (a SIGINT to the group) can be sent to it and its children.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chatsite.stack"],
            cwd=stack.ROOT,
            env=env,
            stdout=open(log_path, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.env, self.port = env, int(env["PORT"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match:
        """The first match of ``pattern`` in the log after offset ``start``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.compile(pattern).search(self.log(), start)
            if found:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(f"launcher exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the log after {timeout} s:\n{self.log()[-4000:]}")
            time.sleep(0.2)

    def pid_of(self, name: str) -> int:
        """The pid of the newest ``name`` (redis, worker, daphne) the launcher says it started (its line is
        plain text, or with LOG_FORMAT=json a JSON record's message)."""
        return int(re.findall(rf'(?:^|"message": "){name} running \(pid (\d+)\)', self.log(), re.M)[-1])

    def redis_url(self) -> str:
        """The embedded Redis's URL, password included, as the launcher recorded it for commands beside it (the
        log shows it without the password)."""
        return recorded_redis_url(Path(self.env["CHAT_REDIS_DIR"]))

    def kill_all(self) -> None:
        """The launcher's group, then every child it said it started: its Redis runs in a process group of its
        own (it would also get SIGTERM when the launcher dies, but a test should not leave it to that)."""
        pids = [int(pid) for pid in re.findall(r"running \(pid (\d+)\)", self.log())]
        for kill in [lambda: os.killpg(self.proc.pid, signal.SIGKILL)] + [
            lambda pid=pid: os.killpg(pid, signal.SIGKILL) for pid in pids
        ]:
            try:
                kill()
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(10)


@pytest.fixture(scope="session")
def launcher_db(tmp_path_factory) -> str:
    """A migrated SQLite file for the launcher's Daphne and worker (apart from the test database)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('launcher-db') / 'db.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=stack.ROOT,
        check=True,
        timeout=120,
        env={**os.environ, "DATABASE_URL": url},
        stdout=subprocess.DEVNULL,
    )
    return url


@pytest.fixture
def launcher_env(launcher_db, tmp_path) -> dict:
    """The launcher's environment: embedded Redis in a temp dir (REDIS_URL removed), a free port, SQLite."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CHAT_TEST_EMBEDDED_REDIS")}
    env.update(
        {
            "PORT": str(stack.free_port()),
            "CHAT_REDIS_DIR": str(tmp_path / "redis"),
            "DATABASE_URL": launcher_db,
            "WORKER_CONCURRENCY": "4",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def start_launcher(tmp_path):
    """``start_launcher(env)`` → a running Launcher; all of its processes are killed at the end of the test."""
    started = []

    def start(env: dict) -> Launcher:
        launcher = Launcher(env, tmp_path / f"launcher-{len(started)}.log")
        started.append(launcher)
        return launcher

    yield start
    for launcher in started:
        launcher.kill_all()
