"""The embedded Redis of `make run` holds reply text, people's counters and the task queue on a loopback port
that every local account can reach: it requires a password, which only this account can read, and everything
the launcher starts (and a command beside it) still finds it."""

import asyncio
import os
import stat
import subprocess
import sys
from urllib.parse import urlsplit

import psutil
import pytest
import redis

from chat.names import WORKERS_KEY
from chatsite import stack
from tests.launcher.conftest import READY
from tests.launcher.test_supervision import chat_once, session_cookie

pytestmark = pytest.mark.e2e
NOBODY = 65534


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def as_nobody(port: int, command: str) -> str:
    """What the embedded Redis answers another local account (``nobody``) sending ``command`` on its port."""
    script = f'exec 3<>/dev/tcp/127.0.0.1/{port} && printf "{command}\\r\\n" >&3 && read -t 10 line <&3; echo "$line"'
    out = subprocess.run(["bash", "-c", script], user=NOBODY, group=NOBODY, capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def test_the_embedded_redis_refuses_clients_without_its_password_and_the_stack_still_works(
    launcher_env, start_launcher, tmp_path
):
    """Fault: a client without the password (another local account, a guess) on the embedded Redis's port.
    Outcome: every command refused; the password is in private files only (never the log or a command line);
    the launcher's worker and Daphne, and a command run beside them, use it."""
    launcher = start_launcher(launcher_env)
    launcher.wait_for(READY, timeout=180)
    url = urlsplit(launcher.redis_url())
    for guest in (
        redis.Redis(host="127.0.0.1", port=url.port, socket_timeout=10),
        redis.Redis(host="127.0.0.1", port=url.port, password="guess", socket_timeout=10),
    ):
        with pytest.raises(redis.exceptions.AuthenticationError):
            guest.keys("*")
    if os.geteuid() == 0:  # the finding's own try: another account on this host (needs root to become one)
        assert as_nobody(url.port, "KEYS *").startswith("-NOAUTH")
        assert as_nobody(url.port, f"ZRANGE {WORKERS_KEY} 0 -1").startswith("-NOAUTH")

    redis_dir = tmp_path / "redis"
    password = (redis_dir / "password").read_text().strip()
    assert url.password == password and len(password) >= 40
    assert mode(redis_dir) == 0o700
    assert {name: mode(redis_dir / name) for name in ("password", "redis.conf", "redis.url")} == dict.fromkeys(
        ("password", "redis.conf", "redis.url"), 0o600
    )
    assert password not in launcher.log()
    for process in psutil.Process(launcher.proc.pid).children(recursive=True):  # argv: readable by everyone
        assert password not in " ".join(process.cmdline()), process.cmdline()

    done = asyncio.run(chat_once(launcher.port, session_cookie(launcher.env)))  # the worker and Daphne use it
    assert done["status"] == "complete" and done["content"]
    owner = redis.Redis.from_url(launcher.redis_url(), decode_responses=True, socket_timeout=10)
    assert owner.zcard(WORKERS_KEY) == 1 and owner.dbsize() > 0  # there is something to protect

    # A command beside the launcher (no REDIS_URL) reads the recorded URL and gets in.
    beside = {k: v for k, v in launcher.env.items() if k != "REDIS_URL"}
    code = (
        "import django; django.setup(); from chat.store import client, live_workers; print(len(live_workers(client())))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=stack.ROOT,
        env={**beside, "DJANGO_SETTINGS_MODULE": "chatsite.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr[-2000:]
