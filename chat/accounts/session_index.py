"""Each person's sessions, indexed by person in Redis (``chat:sessions:<user>``: a sorted set of session keys,
score = when they logged in), so that deleting an account deletes that person's sessions by key, without
reading anyone else's (Django's session table has no user column: the only other way is decoding every row).

A key goes in on Django's ``user_logged_in`` and out on ``user_logged_out`` (``chat/accounts/signals.py``); the set
expires ``SESSION_COOKIE_AGE`` after the person's last login, and each login drops entries older than that.

The index is best effort, and need not be more: a session it misses is void anyway once the user row is gone.
That covers a session made before the index existed, one whose key Django cycled without a login (a password
change), one whose login happened while Redis was unreachable, and one that outlived its entry (saved again
after login, its expiry moved on). Django signs no one in from such a row: ``get_user`` looks the session's
user id up and finds no one (and were the id ever someone else's, the session's auth hash, made from the
deleted person's password hash, would not match), so it is an orphan row, which ``manage.py clearsessions`` removes once
expired like any other.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from redis.exceptions import RedisError

from chat.names import sessions_key
from chat.store import client

log = logging.getLogger(__name__)


def session_indexed(user_id: int, session_key: str | None) -> None:
    """Remember that ``session_key`` is signed in as the person (at login)."""
    if not session_key:
        return
    key, now, age = sessions_key(user_id), time.time(), settings.SESSION_COOKIE_AGE
    try:
        pipe = client().pipeline()
        pipe.zadd(key, {session_key: now})
        pipe.zremrangebyscore(key, 0, now - age)  # sessions that have expired since (bounded by logins per age)
        pipe.expire(key, age)
        pipe.execute()
    except RedisError:  # the login goes on: such a session is void once the person is deleted
        log.warning("could not index a session of user %s", user_id, exc_info=True)


def session_unindexed(user_id: int, session_key: str | None) -> None:
    """Forget one session of the person's (at logout)."""
    if not session_key:
        return
    try:
        client().zrem(sessions_key(user_id), session_key)
    except RedisError:  # an entry left behind names a row that is gone: deleting it later is a no-op
        log.warning("could not unindex a session of user %s", user_id, exc_info=True)


def session_keys(user_id: int) -> list[str]:
    """The person's session keys, as indexed; empty when Redis cannot be read (the sessions stay, void once
    the person is deleted)."""
    try:
        return client().zrange(sessions_key(user_id), 0, -1)
    except RedisError:
        log.warning("could not read the sessions of user %s; they stay until they expire", user_id, exc_info=True)
        return []


def sessions_forget(user_id: int) -> None:
    """Drop a deleted person's index."""
    try:
        client().delete(sessions_key(user_id))
    except RedisError:  # it expires by itself SESSION_COOKIE_AGE after their last login
        log.warning("could not forget the session index of deleted user %s", user_id, exc_info=True)
