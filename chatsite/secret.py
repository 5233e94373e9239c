"""Files only this account may read: the per-install secret key and the directories and files under var/.

Django-free, so the launcher can use it before settings are read.
"""

import os
import secrets
from pathlib import Path


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) with mode 0700, or narrow it to 0700 if others may enter it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if missing, or narrow it to 0600 if others may read it.

    An empty file is a valid new SQLite database, and SQLite gives its -wal and -shm files the mode of the
    database file, so creating it here is enough to keep all three private.
    """
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    return path


def private_database_file(name: str) -> None:
    """``private_file`` for a SQLite database name, unless it is in memory or its directory does not exist."""
    path = Path(name) if name and name != ":memory:" and not name.startswith("file:") else None
    if path is not None and path.parent.is_dir():
        private_file(path)


def local_secret_key(path: Path) -> str:
    """Read the key at ``path``, creating it (mode 0600) on first use."""
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        private_dir(path.parent)
        key = secrets.token_urlsafe(50)
        # Written whole under another name, then linked into place: two processes starting together agree on
        # one key (link fails if the name exists), and neither can read a half-written file.
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_text().strip()
        finally:
            tmp.unlink()
        return key
    private_file(path)  # a key written by an older version was readable by everyone
    return key


def read_secret_key(path: Path) -> str | None:
    """The key at ``path`` (narrowed to 0600 if it was wider), or None when there is no such file."""
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        return None
    private_file(path)  # a key written by an older version was readable by everyone
    return key or None


if __name__ == "__main__":  # `python -m chatsite.secret [PATH]`: make sure a key file exists (make run does)
    import sys

    local_secret_key(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "var" / "secret_key"
    )
