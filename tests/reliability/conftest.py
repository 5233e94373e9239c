"""A stack of its own for fault injection: its own redis-server (so it can be restarted), short leases."""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis

from chatsite import stack
from tests.helpers.live import Stack, clients_for


@pytest.fixture(scope="module")
def fault_stack(request, django_db_setup, django_db_blocker):
    """Per test module; a module may add settings for its processes with a module-level ``FAULT_ENV``."""
    from django.db import connection

    from tests.helpers.live import _database_url

    logs = Path(tempfile.mkdtemp(prefix="chat-faults-"))
    redis_proc, redis_url = stack.start_redis(logs / "redis", persist=False, stdout=subprocess.DEVNULL)
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": _database_url(connection.settings_dict),
            "REDIS_URL": redis_url,
            "CHAT_LEASE_TTL_S": "3",
            "CHAT_HEARTBEAT_S": "1",
            "CHAT_SWEEP_INTERVAL_S": "1",
            "CHAT_MAX_BATCH": "8",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **getattr(request.module, "FAULT_ENV", {}),
        }
    )
    s = Stack(stack.free_port(), env, logs)
    s.redis_proc, s.redis = redis_proc, redis.Redis.from_url(redis_url)
    s.start_worker()
    s.daphne = stack.start_daphne(s.port, env, stdout=open(logs / "daphne.log", "w"), stderr=subprocess.STDOUT)
    yield s
    stack.stop(s.daphne, s.worker)
    stack.stop(s.redis_proc)


@pytest.fixture
def fault_chat(fault_stack, transactional_db, make_user, session_cookie):
    return clients_for(fault_stack, make_user, session_cookie)
