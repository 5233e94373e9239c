"""What var/ holds is for this account only: the directory 0700, the secret key and the SQLite file 0600."""

import os
import stat
import subprocess
import sys

import pytest

from chatsite import stack
from chatsite.secret import (
    local_secret_key,
    private_database_file,
    private_dir,
    private_file,
)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """The permissive umask that made var/ world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_private_dir_creates_0700_and_narrows_a_wider_one(tmp_path, open_umask):
    assert mode(private_dir(tmp_path / "a" / "var")) == 0o700
    wide = tmp_path / "wide"
    wide.mkdir(mode=0o755)
    (wide / "kept").write_text("x")
    private_dir(wide)
    assert mode(wide) == 0o700 and (wide / "kept").read_text() == "x"


def test_private_file_creates_0600_and_narrows_a_wider_one(tmp_path, open_umask):
    assert mode(private_file(tmp_path / "new")) == 0o600 and (tmp_path / "new").read_bytes() == b""
    old = tmp_path / "old"
    old.write_text("data")
    old.chmod(0o644)
    private_file(old)
    assert mode(old) == 0o600 and old.read_text() == "data"


def test_secret_key_is_0600_stays_the_same_and_an_old_readable_one_is_narrowed(tmp_path, open_umask):
    path = tmp_path / "var" / "secret_key"
    key = local_secret_key(path)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700 and len(key) > 40
    assert local_secret_key(path) == key and os.listdir(path.parent) == ["secret_key"]  # no temp file left
    path.chmod(0o644)
    assert local_secret_key(path) == key and mode(path) == 0o600


def test_private_database_file_leaves_memory_and_missing_dirs_alone(tmp_path):
    private_database_file(":memory:")
    private_database_file(str(tmp_path / "missing" / "db.sqlite3"))
    assert not (tmp_path / "missing").exists()


def test_settings_make_var_0700_and_the_sqlite_file_and_its_wal_0600(tmp_path):
    """Settings as the launcher's processes read them, with a permissive umask and a var/ left 0755."""
    stack.ROOT.joinpath("var").chmod(0o755)
    db = tmp_path / "db.sqlite3"
    code = (
        "import os, stat; os.umask(0o022); import django; django.setup(); from django.db import connection; "
        "c = connection.cursor(); c.execute('CREATE TABLE t (x)'); c.execute('INSERT INTO t VALUES (1)'); "
        "name = connection.settings_dict['NAME']; "
        "print([oct(stat.S_IMODE(os.stat(name + end).st_mode)) for end in ('', '-wal', '-shm')])"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatsite.settings", "DATABASE_URL": f"sqlite:///{db}"}
    env.pop("SECRET_KEY", None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=stack.ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    # While it is open (WAL mode) SQLite keeps -wal and -shm files beside it, with the database file's mode.
    assert out.strip() == "['0o600', '0o600', '0o600']"
    assert mode(stack.ROOT / "var") == 0o700
    assert mode(stack.ROOT / "var" / "secret_key") == 0o600


def test_the_embedded_redis_dir_is_0700(tmp_path, open_umask):
    proc, _ = stack.start_redis(tmp_path / "redis", persist=False, stdout=subprocess.DEVNULL)
    stack.stop(proc)
    assert mode(tmp_path / "redis") == 0o700
