"""Where a running ``make run`` says its embedded Redis listens: ``<CHAT_REDIS_DIR>/redis.url``.

The embedded ``redis-server`` gets a free port at every start, which only the launched processes knew; a
management command started beside it (``manage.py shell``, ``createsuperuser`` touching sessions) would talk
to whatever listens on 6379 instead. The launcher records the URL here and removes it when it stops; settings
read it when ``REDIS_URL`` is unset. The file sits in the Redis directory, so launchers with their own
directories (the tests') never overwrite each other's. Django-free: the launcher writes it before settings exist.
"""

from __future__ import annotations

from pathlib import Path

URL_FILE = "redis.url"


def record_redis_url(redis_dir: Path, url: str) -> Path:
    """Write ``url`` for commands started beside the launcher (whole, under another name, then renamed)."""
    path = redis_dir / URL_FILE
    tmp = path.with_name(f".{URL_FILE}.tmp")
    tmp.write_text(url + "\n")
    tmp.replace(path)
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
