"""`WORKERS=2 make run`: two worker processes that divide the cores, each pinned to its GPU by CHAT_WORKER_GPUS,
both heartbeat and both answer; with LOG_FORMAT=json every line of the whole output is one JSON object; commands
run beside the launcher find its embedded Redis through the URL it records."""

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis
import websockets

from chatsite import stack
from tests.e2e.test_chat_stack import ask
from tests.helpers import support
from tests.launcher.conftest import READY
from tests.launcher.test_supervision import wait_for_heartbeat

pytestmark = pytest.mark.e2e


def json_records(log: str) -> list[dict]:
    """Every line of the launcher's output (LOG_FORMAT=json: its own lines, Daphne's and the workers', access
    log included), each of which must be one JSON object; a last line still being written is left for later."""
    return support.json_records(log)


def environ_of(pid: int) -> dict:
    """The environment a running process was started with."""
    raw = open(f"/proc/{pid}/environ", "rb").read().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def cookies_for(env: dict, usernames: list[str]) -> list[str]:
    """Signed-in users in the launcher's database (not the test database), as Cookie header values."""
    code = (
        "import django; django.setup(); from django.contrib.auth import get_user_model; "
        "from django.test import Client\n"
        f"for name in {usernames!r}:\n"
        "    user = get_user_model().objects.create_user(name, password='x'); client = Client(); "
        "client.force_login(user); print(client.cookies['sessionid'].value)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=stack.ROOT,
        capture_output=True,
        text=True,
        env={**env, "DJANGO_SETTINGS_MODULE": "chatsite.settings"},
        timeout=60,
        check=True,
    ).stdout
    return [f"sessionid={line.strip()}" for line in out.splitlines()]


def test_two_workers_divide_the_cores_both_heartbeat_and_both_answer(launcher_env, start_launcher, tmp_path):
    cores = len(os.sched_getaffinity(0))
    # Pinned to GPUs 0 and 1: on a CPU host the names only travel (CHAT_DEVICE=auto finds no CUDA either way).
    env = {**launcher_env, "WORKERS": "2", "WORKER_CONCURRENCY": "8", "LOG_FORMAT": "json", "CHAT_WORKER_GPUS": "0,1"}
    env.pop("CHAT_TORCH_THREADS", None)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    launcher = start_launcher(env)
    launcher.wait_for(READY, timeout=300)
    pids = [launcher.pid_of("worker1"), launcher.pid_of("worker2")]
    assert [environ_of(pid).get("CUDA_VISIBLE_DEVICES") for pid in pids] == ["0", "1"]
    assert "CUDA_VISIBLE_DEVICES" not in environ_of(launcher.pid_of("daphne"))
    client = redis.Redis.from_url(launcher.redis_url(), decode_responses=True, socket_timeout=10)
    for pid in pids:
        wait_for_heartbeat(client, f"{socket.gethostname()}-{pid}", timeout=10)
    ready = [r for r in json_records(launcher.log()) if r["message"].startswith("model ")]
    assert sorted(r["process"] for r in ready) == sorted(pids)
    assert all(f"({max(1, cores // 2)} torch threads)" in r["message"] for r in ready), ready

    # A command beside the launcher (no REDIS_URL) reaches its embedded Redis: it sees both workers.
    recorded = (tmp_path / "redis" / "redis.url").read_text().strip()
    assert recorded == launcher.redis_url()
    beside = {k: v for k, v in env.items() if k != "REDIS_URL"}
    out = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from chat.replies.liveness import workers_alive; print(len(workers_alive()))",
        ],
        cwd=stack.ROOT,
        env=beside,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip().splitlines()[-1] == "2", out.stdout + out.stderr

    # Eight people chat at once. Either worker could take all eight (eight Celery threads each); the queue alone
    # once gave six to one and two to the other. Each passes a reply on while it holds more than the other
    # (chat/replies/balance.py), so they share them.
    cookies = cookies_for(env, [f"w{i}" for i in range(8)])

    async def one(cookie):
        async with websockets.connect(
            f"ws://127.0.0.1:{launcher.port}/ws/chat/",
            open_timeout=10,
            additional_headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{launcher.port}"},
        ) as ws:
            return (await ask(ws, "Say hello.", max_new_tokens=8))[2][-1]  # this socket's own reply's done

    async def eight():
        return await asyncio.gather(*(one(c) for c in cookies))

    dones = asyncio.run(eight())
    assert all(d["status"] == "complete" for d in dones)
    # A worker logs a reply's end just after storing it, and the stored end is what sends done: the last line may
    # still be on its way when the last done arrives, so the log is read again until it holds all eight (bounded).
    deadline = time.monotonic() + 30
    while True:
        ended = [
            r for r in json_records(launcher.log()) if r["message"].startswith("reply ") and "ended" in r["message"]
        ]
        if len({r["reply_id"] for r in ended}) >= 8 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len({d["message"] for d in dones}) == 8
    assert {r["reply_id"] for r in ended} == {d["message"] for d in dones}
    shares = sorted(sum(r["process"] == pid for r in ended) for pid in pids)
    print(f"replies per worker: {shares}")
    assert shares[0] >= 3, shares  # both workers served replies, about half each
    assert all(isinstance(r["user_id"], int) for r in ended)  # JSON logs carry the reply and the person

    # A path holding U+2028 (Daphne percent-decodes it): its access record must stay one line for any reader.
    probe = http.client.HTTPConnection("127.0.0.1", launcher.port, timeout=10)
    probe.request("GET", "/%E2%80%A8probe")
    assert probe.getresponse().status == 404
    probe.close()

    launcher.proc.send_signal(signal.SIGTERM)
    assert launcher.proc.wait(60) == 0
    # Stopped: the whole output, start to end, is JSON lines (none kept aside as plain text), Daphne's access
    # log among them: each socket's records with the client's address and the person. Every line is ASCII, so
    # no reader's idea of a line end (str.splitlines: U+2028, U+0085…) cuts a record.
    log = launcher.log()
    records = json_records(log)
    assert log.endswith("\n") and len(records) == log.count("\n") == len(log.splitlines())
    assert log.isascii()
    assert [r["status"] for r in records if r.get("path") == "/\u2028probe"] == [404]
    accepted = [r for r in records if r["logger"] == "chat.access" and r["message"] == "websocket /ws/chat/ accepted"]
    assert len(accepted) == 8 and all(r["client"] == "127.0.0.1" and isinstance(r["user_id"], int) for r in accepted), (
        accepted
    )
    assert not (tmp_path / "redis" / "redis.url").exists()  # a stopped launcher leaves no stale address


def test_make_run_starts_the_workers_of_every_model_and_each_answers_its_own_models_chats(
    launcher_env, start_launcher, tmp_path
):
    """CHAT_MODELS with two names (the tiny random model under both: quick to load, and the routing is what is
    proved): WORKERS=1 for the first, its `workers` option 2 for the second; CHAT_WORKER_GPUS spreads all three."""
    from chat.names import model_workers_key
    from tests.e2e.test_models_live import ask as ask_model
    from tests.helpers.live import build_tiny_model

    tiny = build_tiny_model(tmp_path / "tiny")
    env = {
        **launcher_env,
        "CHAT_MODELS": f"first={tiny},second={tiny}",
        "CHAT_MODEL_OPTIONS": json.dumps({"second": {"workers": 2, "label": "Second"}}),
        "CHAT_WORKER_GPUS": "0,1",
        "LOG_FORMAT": "json",
        "CHAT_AUTO_TITLE": "false",
    }
    env.pop("CUDA_VISIBLE_DEVICES", None)
    launcher = start_launcher(env)
    launcher.wait_for(READY, timeout=300)
    assert "models: first (1 worker(s)), second (2 worker(s))" in launcher.log()
    pids = {
        "first": [launcher.pid_of(r"worker1 \(first\)")],
        "second": [launcher.pid_of(r"worker2 \(second\)"), launcher.pid_of(r"worker3 \(second\)")],
    }
    got = []
    for model, model_pids in pids.items():
        for pid in model_pids:
            environ = environ_of(pid)
            argv = open(f"/proc/{pid}/cmdline").read().split("\0")
            got.append(
                (model, environ["CHAT_WORKER_MODEL"], environ["CUDA_VISIBLE_DEVICES"], argv[argv.index("-Q") + 1])
            )
    assert got == [
        ("first", "first", "0", "inference.model.first,inference"),  # the default model reads the shared queue too
        ("second", "second", "1", "inference.model.second"),
        ("second", "second", "0", "inference.model.second"),
    ]
    # Each heartbeats in its model's live set.
    client = redis.Redis.from_url(launcher.redis_url(), decode_responses=True, socket_timeout=10)
    host = socket.gethostname()
    for model, model_pids in pids.items():
        for pid in model_pids:
            wait_for_heartbeat(client, f"{host}-{pid}", timeout=10)
        assert set(client.zrange(model_workers_key(model), 0, -1)) == {f"{host}-{pid}" for pid in model_pids}

    # A chat of each model is answered by a worker of that model.
    (cookie,) = cookies_for(env, ["models-person"])

    async def both():
        async with websockets.connect(
            f"ws://127.0.0.1:{launcher.port}/ws/chat/",
            open_timeout=10,
            additional_headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{launcher.port}"},
        ) as ws:
            first, _ = await ask_model(ws, "Hi", params={"max_new_tokens": 4})
            second, _ = await ask_model(ws, "Hi", model="second", params={"max_new_tokens": 4})
            return first, second

    first, second = asyncio.run(both())
    assert (first["model"], second["model"]) == ("first", "second")
    deadline = time.monotonic() + 30
    while True:  # the worker's log line may trail the done frame a moment
        ended = {
            r["reply_id"]: r["process"]
            for r in json_records(launcher.log())
            if r["message"].startswith("reply ") and "ended" in r["message"]
        }
        if {first["id"], second["id"]} <= set(ended) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ended[first["id"]] in pids["first"] and ended[second["id"]] in pids["second"], ended
