"""`make run` survives its children: a killed worker or Daphne is started again and the site stays up."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import psutil
import pytest
import redis
import websockets

from chat.names import WORKERS_KEY
from chat.store import live_workers
from chatsite import stack
from tests.helpers.live import recv_until, send
from tests.launcher.conftest import READY

pytestmark = pytest.mark.e2e


def healthz(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        return json.loads(response.read())


def kill(pid: int) -> None:
    """SIGKILL and wait until the process is gone (its parent, the launcher, reaps it)."""
    process = psutil.Process(pid)
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def wait_for_heartbeat(client, member: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while member not in live_workers(client):
        assert time.monotonic() < deadline, f"{member} never heartbeat: {client.zrange(WORKERS_KEY, 0, -1)}"
        time.sleep(0.2)


def session_cookie(env: dict) -> str:
    """A new signed-in user in the launcher's database (not the test database), as a Cookie header value. The
    database is the session's (``launcher_db``), shared by every launcher test: each user gets a name of its own."""
    name = f"alice-{uuid.uuid4().hex[:8]}"
    code = (
        "import django; django.setup(); from django.contrib.auth import get_user_model; "
        f"from django.test import Client; user = get_user_model().objects.create_user({name!r}, password='x'); "
        "client = Client(); client.force_login(user); print(client.cookies['sessionid'].value)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=stack.ROOT,
        capture_output=True,
        text=True,
        env={**env, "DJANGO_SETTINGS_MODULE": "chatsite.settings"},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return f"sessionid={out.stdout.strip()}"


async def chat_once(port: int, cookie: str) -> dict:
    """Send one message over a websocket; the reply's done frame."""
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws/chat/",
        open_timeout=10,
        additional_headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"},
    ) as ws:
        await send(
            ws,
            {
                "type": "send",
                "conversation": None,
                "content": "Say hello.",
                "client_id": "t",
                "params": {"max_new_tokens": 8},
            },
        )
        return (await recv_until(ws, "done", timeout=60))[-1]


def test_a_killed_worker_and_daphne_are_restarted_and_ctrl_c_stops_everything_in_order(launcher_env, start_launcher):
    """Fault: SIGKILL the worker, later Daphne. Outcome: the launcher keeps running, says it restarts each
    (1 s back-off), Daphne answers meanwhile, a new worker heartbeats; Ctrl-C then stops every process, in order."""
    launcher = start_launcher(launcher_env)
    launcher.wait_for(READY, timeout=180)
    client = redis.Redis.from_url(launcher.redis_url(), decode_responses=True, socket_timeout=10)
    host = socket.gethostname()
    old_worker = launcher.pid_of("worker")
    assert f"{host}-{old_worker}" in live_workers(client)

    mark = len(launcher.log())
    kill(old_worker)
    said = launcher.wait_for(r"worker exited with -9; restarting in 1 s\n", 30, mark)
    launcher.wait_for(r"worker running", 30, said.end())
    assert healthz(launcher.port) == {"status": "ok"}  # Daphne was never touched
    new_worker = launcher.pid_of("worker")
    assert new_worker != old_worker and psutil.Process(new_worker).ppid() == launcher.proc.pid
    wait_for_heartbeat(client, f"{host}-{new_worker}", timeout=120)  # its model loaded again
    assert launcher.proc.poll() is None
    done = asyncio.run(chat_once(launcher.port, session_cookie(launcher.env)))  # the new worker answers
    assert done["status"] == "complete" and done["content"]

    mark = len(launcher.log())
    old_daphne = launcher.pid_of("daphne")
    kill(old_daphne)
    said = launcher.wait_for(r"daphne exited with -9; restarting in 1 s\n", 30, mark)
    launcher.wait_for(r"daphne running", 30, said.end())
    deadline = time.monotonic() + 60
    while True:  # the new Daphne needs a few seconds to import Django and listen
        try:
            assert healthz(launcher.port) == {"status": "ok"}
            break
        except OSError:
            assert time.monotonic() < deadline, launcher.log()[-3000:]
            time.sleep(0.3)
    assert launcher.pid_of("daphne") != old_daphne
    assert launcher.proc.poll() is None and launcher.log().count("restarting in") == 2

    children = psutil.Process(launcher.proc.pid).children(recursive=True)
    started = {launcher.pid_of(name) for name in ("redis", "worker", "daphne")}
    assert started <= {c.pid for c in children}
    # Redis in a process group of its own, the worker and Daphne in the launcher's: Ctrl-C in a terminal, a SIGINT
    # to that group, reaches them but not Redis, which the launcher stops last — no worker or Daphne loses its
    # Redis while it stops (before, Redis died with the rest at once: a traceback per worker, a reply failed).
    redis_pid = launcher.pid_of("redis")
    assert os.getpgid(redis_pid) == redis_pid != os.getpgid(launcher.proc.pid)
    assert {os.getpgid(launcher.pid_of(name)) for name in ("worker", "daphne")} == {os.getpgid(launcher.proc.pid)}
    mark = len(launcher.log())
    os.killpg(launcher.proc.pid, signal.SIGINT)
    assert launcher.proc.wait(60) == 0
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    stopping = launcher.log()[mark:]
    assert "Traceback" not in stopping and "ConnectionRefusedError" not in stopping, stopping[-3000:]
    assert launcher.log().count("restarting in") == 2  # stopping is not taken for a crash
