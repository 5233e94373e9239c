"""Fair use per person: messages per minute, tokens per day, replies at once.

The site's settings give everyone the same allowance; a ``QuotaOverride`` row (edited by staff in the admin)
changes any of the three for one person. The counters live in Redis, so every Daphne process, the API and the
workers share them:

- messages per minute: the ``limits`` library's moving window (``chat:limits/...`` keys), hit once per new
  reply (a send, a regenerate, an edit), before the write transaction;
- tokens per day: ``chat:tokens:<user>:<day>``, the prompt and completion tokens of every finished reply,
  added by ``services.reply_finish`` (the one end of a reply, so the worker's count is what is charged), in
  the site's time zone, expiring two days later. A reply is admitted while the day's count is under the
  allowance, so the last one may go over it: a person is never cut off mid-sentence.

The same moving window bounds the accounts one client address makes in an hour (``signup_hit``): each new
account brings its own allowance.

A refusal is a ``ChatError`` with a stable code and a sentence that says when to try again.
"""

from __future__ import annotations

import datetime
import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from limits import RateLimitItemPerHour, RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from chat.errors import ChatError, ErrorCode
from chat.names import tokens_key
from chat.store import client, connection_options

log = logging.getLogger(__name__)
UNAVAILABLE = "The server cannot reach its counters right now; try again in a moment."


@dataclass(frozen=True)
class Allowance:
    """What one person may use; 0 means no limit (for the two rates)."""

    messages_per_minute: int
    tokens_per_day: int
    max_active: int


def allowance_for(user_id: int) -> Allowance:
    """The site's allowance, with this person's overrides where staff set any."""
    from chat.models import QuotaOverride

    row = QuotaOverride.objects.filter(user_id=user_id).first()

    def pick(field: str, default: int) -> int:
        value = getattr(row, field, None) if row else None
        return default if value is None else value

    return Allowance(
        messages_per_minute=pick("messages_per_minute", settings.CHAT_MESSAGES_PER_MINUTE),
        tokens_per_day=pick("tokens_per_day", settings.CHAT_TOKENS_PER_DAY),
        max_active=pick("max_active", settings.CHAT_MAX_ACTIVE_PER_USER),
    )


_limiter: MovingWindowRateLimiter | None = None


def _windows() -> MovingWindowRateLimiter:
    """The moving windows in Redis (``chat:limits/...``), shared by every process."""
    global _limiter
    if _limiter is None:
        storage = RedisStorage(
            settings.REDIS_URL,
            key_prefix="chat:limits",
            wrap_exceptions=True,
            socket_timeout=5,
            socket_connect_timeout=2,
            **connection_options(for_asyncio=False),
        )
        _limiter = MovingWindowRateLimiter(storage)
    return _limiter


def _window_hit(item, namespace: str, key: str) -> int | None:
    """One more in ``key``'s moving window: None when it fits, else the whole seconds until it would. Redis
    away: ``unavailable``."""
    limiter = _windows()
    try:
        if limiter.hit(item, namespace, key):
            return None
        reset = limiter.get_window_stats(item, namespace, key).reset_time
    except StorageError:
        raise ChatError(ErrorCode.UNAVAILABLE, UNAVAILABLE) from None
    return max(1, math.ceil(reset - timezone.now().timestamp()))


def message_hit(user_id: int, allowance: Allowance) -> None:
    """Count one new reply against the person's messages per minute, or refuse it (``rate_limited``)."""
    if allowance.messages_per_minute <= 0:
        return
    wait = _window_hit(RateLimitItemPerMinute(allowance.messages_per_minute), "messages", str(user_id))
    if wait is None:
        return
    n = allowance.messages_per_minute
    raise ChatError(
        ErrorCode.RATE_LIMITED,
        f"You have sent {n} message{'s' if n != 1 else ''} in the last minute, the "
        f"most this site allows; try again in {wait} s.",
        retry_after=wait,
    )


def signup_hit(address: str | None) -> None:
    """Count one new account made from this client address, or refuse it (``signup_rate_limited``) when it made
    CHAT_SIGNUPS_PER_HOUR in the last hour. No address (a test client without one), or 0: not limited."""
    n = settings.CHAT_SIGNUPS_PER_HOUR
    if n <= 0 or not address:
        return
    wait = _window_hit(RateLimitItemPerHour(n), "signups", address)
    if wait is None:
        return
    raise ChatError(
        ErrorCode.SIGNUP_RATE_LIMITED,
        f"{n} account{'s have' if n != 1 else ' has'} been made from your "
        f"address in the last hour, the most this site allows; try again in "
        f"{_in_words(wait)}, or ask the site's staff for an invite link.",
        retry_after=wait,
    )


def _today() -> datetime.date:
    return timezone.localdate()


def resets_at() -> datetime.datetime:
    """When today's token allowance starts again: the next midnight in the site's time zone."""
    tomorrow = _today() + datetime.timedelta(days=1)
    return timezone.make_aware(datetime.datetime.combine(tomorrow, datetime.time.min))


def tokens_used_today(user_id: int) -> int:
    return int(client().get(tokens_key(user_id, _today())) or 0)


def tokens_used_today_many(user_ids: list[int]) -> dict[int, int | None]:
    """Today's use of several people in one round trip; None for all when Redis is unreachable."""
    if not user_ids:
        return {}
    try:
        values = client().mget([tokens_key(u, _today()) for u in user_ids])
    except RedisError:
        return dict.fromkeys(user_ids)
    return {u: int(v or 0) for u, v in zip(user_ids, values)}


def _in_words(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def require_tokens_left(user_id: int, allowance: Allowance) -> None:
    """Refuse a new reply once the person's tokens today reached the allowance (``quota_exhausted``)."""
    if allowance.tokens_per_day <= 0:
        return
    try:
        used = tokens_used_today(user_id)
    except RedisError:
        raise ChatError(ErrorCode.UNAVAILABLE, UNAVAILABLE) from None
    if used >= allowance.tokens_per_day:
        reset = resets_at()
        left = (reset - timezone.now()).total_seconds()
        raise ChatError(
            ErrorCode.QUOTA_EXHAUSTED,
            f"You have used today's {allowance.tokens_per_day:,} token"
            f"{'s' if allowance.tokens_per_day != 1 else ''}. Your allowance starts again "
            f"at {reset:%H:%M} {reset.tzname()} (in {_in_words(left)}).",
            retry_after=left,
        )


def tokens_count(user_id: int, tokens: int) -> None:
    """Charge a finished reply's tokens to its owner's day. A Redis failure is logged, never raised: the reply
    has been written and stored; losing its count is the lesser harm."""
    if tokens <= 0:
        return
    key = tokens_key(user_id, _today())
    try:
        pipe = client().pipeline(transaction=True)
        pipe.incrby(key, tokens)
        pipe.expire(key, 2 * 24 * 3600)
        pipe.execute()
    except RedisError:
        log.warning("could not count %s tokens for user %s", tokens, user_id, exc_info=True)


def counters_forget(user_id: int, allowance: Allowance) -> None:
    """Forget a deleted person's counters: every day's tokens still kept and their minute's window (for
    ``allowance``; a window under an allowance changed within the last minute expires by itself a minute on).
    A Redis failure is logged: the keys expire by themselves (tokens two days after their day)."""
    days = [_today() - datetime.timedelta(days=n) for n in range(3)]  # a key lives two days past its day
    try:
        client().delete(*(tokens_key(user_id, day) for day in days))
        if allowance.messages_per_minute > 0:
            _windows().clear(RateLimitItemPerMinute(allowance.messages_per_minute), "messages", str(user_id))
    except (RedisError, StorageError):
        log.warning("could not forget the counters of deleted user %s", user_id, exc_info=True)


def summary(user_id: int) -> dict:
    """What the chat page shows a person: their allowance, today's use, and when it starts again."""
    allowance = allowance_for(user_id)
    try:
        used = tokens_used_today(user_id)
    except RedisError:
        used = None
    left = None if allowance.tokens_per_day <= 0 or used is None else max(0, allowance.tokens_per_day - used)
    return {
        "tokens_per_day": allowance.tokens_per_day,
        "tokens_used_today": used,
        "tokens_left_today": left,
        "messages_per_minute": allowance.messages_per_minute,
        "max_active": allowance.max_active,
        "resets_at": resets_at().isoformat(),
    }
