"""The embedded Redis of ``make run``: its password and its recorded address, in ``CHAT_REDIS_DIR`` (private).

Its password: any local account can connect to a loopback port, and Redis holds reply text (stream logs),
people's counters and the Celery queue. So the embedded server requires a password, generated once into
``<CHAT_REDIS_DIR>/password`` (0600, in the 0700 directory, like ``var/secret_key``) and kept across restarts;
it reaches ``redis-server`` in a config file beside it (0600), never on the command line, which every local
account can read (``ps``, ``/proc/<pid>/cmdline``).

Its address: the embedded ``redis-server`` gets a free port at every start, which only the launched processes
knew; a management command started beside it (``manage.py shell``, ``createsuperuser`` touching sessions)
would talk to whatever listens on 6379 instead. The launcher records the URL, password included, in
``redis.url`` (0600) and removes it when it stops; settings read it when ``REDIS_URL`` is unset. The files sit
in the Redis directory, so launchers with their own directories (the tests') never overwrite each other's.
Its launcher: one at a time per directory (``hold_redis_dir``: a second ``make run`` in the same checkout
would start a second server on the same append-only file). Django-free: the launcher writes them before settings
exist.
"""

from __future__ import annotations

import os
from pathlib import Path

from chatsite.secret import local_secret_key, private_dir

URL_FILE = "redis.url"
PASSWORD_FILE = "password"
CONFIG_FILE = "redis.conf"


def _write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, mode 0600: written whole under another name, then renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def redis_password(redis_dir: Path) -> str:
    """The embedded Redis's password, generated on first use (0600, the directory 0700)."""
    private_dir(redis_dir)
    return local_secret_key(redis_dir / PASSWORD_FILE)


def redis_config(redis_dir: Path) -> Path:
    """The config file ``redis-server`` is started with: only what must stay off its command line."""
    path = redis_dir / CONFIG_FILE
    _write_private(path, f"requirepass {redis_password(redis_dir)}\n")
    return path


def record_redis_url(redis_dir: Path, url: str) -> Path:
    """Write ``url`` for commands started beside the launcher (0600: it holds the password)."""
    path = redis_dir / URL_FILE
    _write_private(path, url + "\n")
    return path


def forget_redis_url(redis_dir: Path, url: str) -> None:
    """Remove the record at a clean stop, unless another launcher on the same directory replaced it since."""
    if recorded_redis_url(redis_dir) == url:
        (redis_dir / URL_FILE).unlink(missing_ok=True)


def recorded_redis_url(redis_dir: Path) -> str | None:
    """The URL a launcher recorded in ``redis_dir``, or None."""
    try:
        return (redis_dir / URL_FILE).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None


def hold_redis_dir(redis_dir: Path):
    """An exclusive lock on the embedded Redis's directory for this launcher's life (the open file holds it), or
    None when another launcher holds it: two would share one append-only file and one ``redis.url``."""
    import fcntl

    private_dir(redis_dir)
    lock = open(redis_dir / "launcher.lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock
