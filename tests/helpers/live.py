"""The real stack for end-to-end and browser tests: Redis (embedded or REDIS_URL), a Celery worker process
holding the bundled model, and Daphne, all on loopback and sharing the test database. The fixtures are
re-exported by tests/conftest.py."""

import asyncio
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import websockets

from chatsite import stack


def _database_url(settings_dict) -> str:
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user, password = settings_dict.get("USER") or "", settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host, port = settings_dict["HOST"] or "127.0.0.1", settings_dict["PORT"] or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


def _wait_for_log(path: Path, needle: str, proc, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{path.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"worker not ready:\n{path.read_text(errors='replace')[-4000:]}")


# The live stack's batch cap and worker threads: room for eight API streams beside a browser chat in one batch
# (tests/chat/api/test_api_limits_live.py), the proof of shared forward passes.
LIVE_BATCH = 9
# The live stack serves two models: the bundled one under its usual name (the default, its worker always
# running) and TINY, a randomly initialised 2-layer Llama saved as a local folder (quality does not matter where
# it is used: routing, refusals, Compare). TINY's worker runs only while a test asks for it (``tiny_worker``).
DEFAULT_MODEL = "bundled:smollm2-135m-instruct"
TINY = "tiny"
# A third name for the tiny model, open only to the TESTERS group (the catalog's groups, proved over the API and
# the socket: tests/e2e/test_models_api_live.py). Its worker runs only inside the test that starts it; its
# `workers` option 0 keeps the torch threads the other workers get (cores // 2, as before it was listed).
RESTRICTED = "tiny-testers"
TESTERS = "testers"


def build_tiny_model(folder: Path) -> Path:
    """A tiny random Llama with the bundled tokenizer (its chat template too), saved to ``folder``: a model a
    worker loads from a local folder, as an operator's own would be (~1 s, a few MB)."""
    from transformers import AutoTokenizer

    from inference.loading import BUNDLED, resolve_model_path
    from tests.helpers.tiny import tiny_llama

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(BUNDLED))
    tiny_llama(tokenizer, max_positions=1024).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class Stack:
    def __init__(self, port: int, env: dict, logs: Path):
        self.port, self.env, self.logs = port, env, logs
        self.url = f"ws://127.0.0.1:{port}/ws/chat/"
        self.origin = f"http://127.0.0.1:{port}"
        self.worker = None
        self.tiny = None  # the second model's worker (``tiny_worker``)
        self.daphne = None

    def start_worker(self, name="inference", model: str | None = None):
        """Start a worker process of ``model`` (default: the default model) and wait until its model is loaded;
        the newest of the default model is ``self.worker``."""
        log = self.logs / f"{name}.log"
        threads = int(self.env.get("CHAT_MAX_BATCH", LIVE_BATCH))  # one thread per batch row: every row usable
        proc = stack.start_worker(
            self.env, concurrency=threads, name=name, model=model, stdout=open(log, "w"), stderr=subprocess.STDOUT
        )
        _wait_for_log(log, "ready.", proc)
        _wait_for_log(log, "model ", proc)
        if model in (None, DEFAULT_MODEL):
            self.worker = proc
        return proc

    def log_tail(self, name="inference", n=3000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-n:]


@pytest.fixture(scope="session")
def live_stack(django_db_setup, django_db_blocker):
    """Start once per session; tests use ``transactional_db`` so their rows are visible to these processes."""
    import redis
    from django.db import connection

    from chat.names import SHARED_QUEUE, model_queue

    logs = Path(tempfile.mkdtemp(prefix="chat-e2e-"))
    tiny = build_tiny_model(logs / "tiny-model")
    env = dict(os.environ)
    # The frame rate is a person's, over all their sockets (chat/limits/sockets.py): the flood tests here send fifty
    # frames at once to prove other limits, and the rate's own tests are the consumer's.
    env.update(
        {
            "DATABASE_URL": _database_url(connection.settings_dict),
            "CHAT_MAX_BATCH": str(LIVE_BATCH),
            "CHAT_FRAME_RATE": "1000/second",
            "CHAT_STREAM_FLUSH_MS": "40",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "CHAT_MODELS": f"{DEFAULT_MODEL}={DEFAULT_MODEL},{TINY}={tiny},{RESTRICTED}={tiny}",
            "CHAT_MODEL_OPTIONS": json.dumps(
                {
                    DEFAULT_MODEL: {"label": "SmolLM2 135M", "description": "The bundled model"},
                    TINY: {"label": "Tiny", "description": "A random two-layer model for tests", "max_batch": 4},
                    RESTRICTED: {"label": "Tiny for testers", "groups": [TESTERS], "max_batch": 2, "workers": 0},
                }
            ),
            "CHAT_DEFAULT_MODEL": DEFAULT_MODEL,
        }
    )
    # Tasks left by unit tests, never consumed.
    redis.Redis.from_url(env["REDIS_URL"]).delete(
        SHARED_QUEUE, model_queue(DEFAULT_MODEL), model_queue(TINY), model_queue(RESTRICTED)
    )
    s = Stack(stack.free_port(), env, logs)
    s.start_worker()
    s.daphne = stack.start_daphne(s.port, env, stdout=open(logs / "daphne.log", "w"), stderr=subprocess.STDOUT)
    yield s
    stack.stop(s.daphne, s.worker, s.tiny)
    sweep_never_failed(logs / "daphne.log")


@pytest.fixture
def tiny_worker(live_stack):
    """A worker of the live stack's second model (TINY), started once and kept for the session; started again
    when a test killed it."""
    if live_stack.tiny is None or live_stack.tiny.poll() is not None:
        live_stack.tiny = live_stack.start_worker("tiny", model=TINY)
    return live_stack.tiny


@pytest.fixture
def served_like_the_live_stack(settings, live_stack):
    """This process's settings serve the live stack's two models too (services called in-process then accept
    and route TINY as Daphne does)."""
    from chat import served

    settings.CHAT_SERVED_MODELS = served.parse(live_stack.env["CHAT_MODELS"], "", live_stack.env["CHAT_MODEL_OPTIONS"])
    return settings.CHAT_SERVED_MODELS


@pytest.fixture(autouse=True)
def replies_end_before_the_next_live_test(request):
    """A test on the live stack ends once none of its replies is still queued or streaming (stopped if need be):
    user ids come back after each test's flush, so a reply left running would stream into the next test's
    person's group. Set up after ``transactional_db``, so this runs before the flush."""
    if "live_stack" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    from chat.models import Message
    from chat.replies import services as reply_services

    active = Message.objects.filter(status__in=Message.ACTIVE_STATUSES)
    for reply in active:
        reply_services.reply_stop(message=reply)
    deadline = time.monotonic() + 60
    while active.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def sweep_never_failed(log: Path) -> None:
    """At the end of a session on the live stack: Daphne's own sweep (chat/replies/sweep.py) never failed. Nothing
    here takes Redis or the database away, so a failure is a bug; it once failed every round once an API request
    had been served, and so never ended a dead worker's reply."""
    text = log.read_text(errors="replace")
    at = text.find("sweep failed")
    if at >= 0:
        pytest.fail(f"Daphne's sweep failed during the run ({log}):\n{text[at : at + 3000]}", pytrace=False)


def clients_for(stack_, make_user, session_cookie):
    """A factory: ``for_user("alice")`` → (a fresh user, a websocket client signed in as them on ``stack_``)."""

    def for_user(name="alice"):
        user = make_user(name)
        return user, Client(stack_, session_cookie(user))

    return for_user


@pytest.fixture
def chat(live_stack, transactional_db, make_user, session_cookie):
    return clients_for(live_stack, make_user, session_cookie)


class Client:
    """A websocket client speaking the chat protocol, collecting every frame it receives."""

    def __init__(self, stack_: Stack, cookie: str):
        self.stack, self.cookie = stack_, cookie

    def connect(self, origin=None):
        return websockets.connect(
            self.stack.url,
            additional_headers={"Cookie": self.cookie, "Origin": origin or self.stack.origin},
            max_size=2**22,
        )


async def send(ws, frame: dict) -> None:
    await ws.send(json.dumps(frame))


async def recv(ws, timeout: float = 60.0) -> dict:
    """The next frame, checked against the protocol's schema (chat/frames.py)."""
    from chat.frames import check_frame

    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    check_frame(frame)
    return frame


async def recv_extra(ws, timeout: float) -> dict | None:
    """The next frame about a reply if one comes within ``timeout``, else None — for checking that nothing more
    is sent. A ``conversation`` frame is passed over: it is the model's title arriving for a new conversation
    (CHAT_AUTO_TITLE), which follows its first reply by design."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            frame = await recv(ws, max(0.01, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            return None
        if frame["type"] != "conversation":
            return frame


async def recv_snapshot(ws, reply: int) -> dict:
    """The ``message`` frame a subscribe answers with, passing over deltas of ``reply`` that come first: a socket
    is in the person's group from its opening, so a reply still being written may beat the snapshot (the page
    drops such deltas: the snapshot holds their text)."""
    while (frame := await recv(ws))["type"] != "message":
        assert frame["type"] == "delta" and frame["message"] == reply, frame
    return frame


async def recv_until(ws, kind: str, timeout: float = 120.0, message: int | None = None) -> list[dict]:
    """Frames up to and including the first of ``kind`` (for ``message``, when given)."""
    frames = []
    deadline = time.monotonic() + timeout
    while True:
        frame = await recv(ws, max(0.1, deadline - time.monotonic()))
        frames.append(frame)
        if frame["type"] == kind and (message is None or frame.get("message") == message):
            return frames
