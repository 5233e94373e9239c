"""Start-up with a large append-only file: Redis answers LOADING for seconds, and everything the launcher asks
it waits that out; the embedded Redis keeps its file near the size of its live data."""

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from chat.store import wait_until_loaded
from chatsite import stack
from tests.launcher.conftest import READY

KEYS = 2_000_000  # ~157 MB of plain SET commands: ~3 s of LOADING here, ~3 s to build
LOADING_SAYS = "Redis is loading its data from disk; waiting"


def settle(client) -> None:
    """Wait (bounded) until no append-only rewrite is running or scheduled."""
    deadline = time.monotonic() + 60
    while True:
        info = client.info("persistence")
        if not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]):
            return
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


def aof_size(data_dir: Path) -> int:
    return (data_dir / "appendonly.aof").stat().st_size


# The launcher's auto-aof-rewrite-min-size (chatsite/stack.py, REDIS_AOF_ARGS).
REWRITE_MIN = 16 * 2**20


def let_redis_look(client, data_dir: Path, timeout: float = 3.0) -> None:
    """Past the rewrite threshold, give Redis the moment it needs to notice: it looks at the file's growth in its
    cron (ten times a second), and this loop writes far faster than replies do — 2 MB a tick on a loaded machine,
    where the ticks also come late. Bounded: with Redis's own defaults (a 64 MB threshold) nothing starts, the
    wait runs out, and the size assertion fails as it should."""
    deadline = time.monotonic() + timeout
    while aof_size(data_dir) > REWRITE_MIN and time.monotonic() < deadline:
        info = client.info("persistence")
        if info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]:
            settle(client)
            return
        time.sleep(0.02)


@pytest.fixture(scope="module")
def big_aof(tmp_path_factory) -> Path:
    """An append-only dir of ~157 MB, written as one SET per key (no RDB preamble), so that loading it is
    slow enough to be seen, like a day's worth of replies."""
    data = tmp_path_factory.mktemp("big-aof") / "redis"
    proc, url = stack.start_redis(data, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis.from_url(url)
        client.execute_command("DEBUG", "POPULATE", KEYS, "junk", 40)
        client.config_set("aof-use-rdb-preamble", "no")
        client.bgrewriteaof()
        settle(client)
    finally:
        stack.stop(proc)
    assert aof_size(data) > 140 * 2**20
    return data


@pytest.fixture
def big_copy(big_aof, tmp_path) -> Path:
    """A copy of the big dir, for a test to start a Redis on (Redis rewrites the file it loads)."""
    return Path(shutil.copytree(big_aof, tmp_path / "redis"))


@pytest.fixture
def loading_redis(big_copy):
    """A redis-server started on the big file, still LOADING: (process, url, client)."""
    proc, url = stack.start_redis(big_copy, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis.from_url(url, decode_responses=True)
        assert client.info("persistence")["loading"] == 1  # the test really meets a server loading its file
        yield proc, url, client
    finally:
        stack.stop(proc)


def test_wait_until_loaded_waits_out_loading_and_says_so_once(loading_redis):
    _, _, client = loading_redis
    with pytest.raises(redis.exceptions.BusyLoadingError):
        client.get("junk:0")
    said = []
    wait_until_loaded(client, timeout=60, say=said.append)
    assert said == [LOADING_SAYS]
    assert client.dbsize() == KEYS


def append_command(aof: Path, *args: str) -> None:
    """Append one command to an append-only file, in the protocol Redis writes it in."""
    parts = [f"*{len(args)}\r\n"] + [f"${len(a.encode())}\r\n{a}\r\n" for a in args]
    with open(aof, "a") as f:
        f.write("".join(parts))


def test_wait_for_worker_waits_out_loading(big_copy):
    """A worker's heartbeat is the last command of the file: wait_for_worker sees it once loading is done,
    instead of dying with BusyLoadingError (the launcher exited within 3 s this way)."""
    append_command(big_copy / "appendonly.aof", "ZADD", "chat:workers", str(time.time() + 3600), "host-1")
    proc, url = stack.start_redis(big_copy, stdout=subprocess.DEVNULL)
    try:
        assert redis.Redis.from_url(url).info("persistence")["loading"] == 1
        assert stack.wait_for_worker(url, proc, timeout=60) is True
    finally:
        stack.stop(proc)


@pytest.mark.e2e
def test_the_launcher_starts_on_a_big_append_only_file(big_copy, launcher_env, start_launcher):
    launcher = start_launcher({**launcher_env, "CHAT_REDIS_DIR": str(big_copy)})
    launcher.wait_for(READY, timeout=180)
    log = launcher.log()
    assert log.index(f"{LOADING_SAYS} (up to 300 s)") < log.index("worker running") < log.index(READY)
    client = redis.Redis.from_url(launcher.redis_url())
    assert client.dbsize() >= KEYS  # the data was loaded, not lost


def test_the_append_only_file_stays_near_the_live_data(tmp_path):
    """Load: 60 MB of reply stream logs written and deleted, ten replies live at a time. Outcome: the file is
    rewritten as it grows (Redis's defaults would leave all 60 MB in it), and the rewrite at the next start
    leaves only the live data."""
    data = tmp_path / "redis"
    proc, url = stack.start_redis(data, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis.from_url(url)
        delta = b"d" * 200
        for reply in range(600):  # 600 replies x 500 deltas x 200 B
            pipe = client.pipeline(transaction=False)
            pipe.rpush(f"chat:stream:{reply}", *[delta] * 500)
            pipe.expire(f"chat:stream:{reply}", 3600)
            pipe.delete(f"chat:stream:{reply - 10}")
            pipe.execute()
            settle(client)
            let_redis_look(client, data)
        assert aof_size(data) < 24 * 2**20
        client.set("chat:lease:1", "worker")  # something that must survive
    finally:
        stack.stop(proc)
    proc, url = stack.start_redis(data, stdout=subprocess.DEVNULL)
    try:
        stack.compact_redis(url)
        client = redis.Redis.from_url(url, decode_responses=True)
        settle(client)
        assert aof_size(data) < 2**20 * 1.5  # ten live replies (1 MB) and the lease
        assert client.get("chat:lease:1") == "worker" and client.llen("chat:stream:599") == 500
    finally:
        stack.stop(proc)
