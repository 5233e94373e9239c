"""Fair use per person: messages per minute, tokens per day, replies at once.

The site's settings give everyone the same allowance; a ``QuotaOverride`` row (edited by staff in the admin)
changes any of the three for one person. The counters live in Redis, so every Daphne process, the API and the
workers share them:

- messages per minute: the ``limits`` library's moving window (``chat:limits/...`` keys), hit once per new
  reply (a send, a regenerate, an edit), before the write transaction;
- tokens per day: ``chat:tokens:<user>:<day>``, the prompt and completion tokens of every finished reply,
  added by ``services.reply_finish`` (the one end of a reply, so the worker's count is what is charged), in
  the site's time zone, expiring two days later. Each reply *reserves* a bound of what it can cost when it is
  admitted (``tokens_reserve``, beside the count in ``chat:reserved:<user>``), and its end settles it
  (``tokens_settle``: the real count charged, the reservation let go): a reply is admitted while the day's
  count plus what is reserved is under the allowance, so replies admitted together pass it by at most one
  reply's bound, and a person is never cut off mid-sentence. The model's title is reserved the same way.

The same moving windows bound what one client address may do before there is a person to count it against
(``addresses.py``: sign-ups, sign-up forms, password resets).

A refusal is a ``ChatError`` with a stable code and a sentence that says when to try again.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy, ngettext
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from chat.errors import ChatError, ErrorCode
from chat.names import gone_key, reserved_key, tokens_key
from chat.store import client, connection_options

log = logging.getLogger(__name__)
UNAVAILABLE = gettext_lazy("The server cannot reach its counters right now; try again in a moment.")


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


def window_hit(item, namespace: str, key: str) -> int | None:
    """One more in ``key``'s moving window: None when it fits, else the whole seconds until it would. Redis
    away: ``unavailable``."""
    return _window(item, namespace, key, count=True)


def window_wait(item, namespace: str, key: str) -> int | None:
    """Whether one more would fit in ``key``'s moving window, without counting it: None when it would, else the
    whole seconds until it would. For what is counted only once it succeeded (``window_hit`` then). Redis away:
    ``unavailable``."""
    return _window(item, namespace, key, count=False)


def _window(item, namespace: str, key: str, *, count: bool) -> int | None:
    limiter = _windows()
    try:
        if (limiter.hit if count else limiter.test)(item, namespace, key):
            return None
        reset = limiter.get_window_stats(item, namespace, key).reset_time
    except StorageError:
        raise ChatError(ErrorCode.UNAVAILABLE, UNAVAILABLE) from None
    return max(1, math.ceil(reset - timezone.now().timestamp()))


def message_hit(user_id: int, allowance: Allowance) -> None:
    """Count one new reply against the person's messages per minute, or refuse it (``rate_limited``)."""
    if allowance.messages_per_minute <= 0:
        return
    wait = window_hit(RateLimitItemPerMinute(allowance.messages_per_minute), "messages", str(user_id))
    if wait is None:
        return
    n = allowance.messages_per_minute
    raise ChatError(
        ErrorCode.RATE_LIMITED,
        ngettext(
            "You have sent %(n)s message in the last minute, the most this site allows; try again in %(wait)s s.",
            "You have sent %(n)s messages in the last minute, the most this site allows; try again in %(wait)s s.",
            n,
        )
        % {"n": n, "wait": wait},
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


def in_words(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    if hours:
        return gettext("%(hours)s h %(minutes)s min") % {"hours": hours, "minutes": minutes}
    return gettext("%(minutes)s min") % {"minutes": minutes}


def _exhausted(allowance: Allowance) -> ChatError:
    reset = resets_at()
    left = (reset - timezone.now()).total_seconds()
    return ChatError(
        ErrorCode.QUOTA_EXHAUSTED,
        ngettext(
            "You have used today's %(n)s token. Your allowance starts again at %(at)s %(zone)s (in %(wait)s).",
            "You have used today's %(n)s tokens. Your allowance starts again at %(at)s %(zone)s (in %(wait)s).",
            allowance.tokens_per_day,
        )
        % {
            "n": f"{allowance.tokens_per_day:,}",
            "at": f"{reset:%H:%M}",
            "zone": reset.tzname(),
            "wait": in_words(left),
        },
        retry_after=left,
    )


def require_tokens_left(user_id: int, allowance: Allowance) -> None:
    """Refuse a new reply once the person's tokens today reached the allowance (``quota_exhausted``): a read,
    before anything is held (``tokens_reserve`` checks again, counting what other replies hold)."""
    if allowance.tokens_per_day <= 0:
        return
    try:
        used = tokens_used_today(user_id)
    except RedisError:
        raise ChatError(ErrorCode.UNAVAILABLE, UNAVAILABLE) from None
    if used >= allowance.tokens_per_day:
        raise _exhausted(allowance)


# A reservation not settled by then (its process died between admission and storing the reply) stops counting:
# the longest a reply may wait in the queue (CHAT_QUEUE_TIMEOUT_S) and an hour to write it, far more than one
# takes. A reply that outlives it is still charged at its end; only its hold lapsed.
RESERVATION_WRITE_S = 3600


def _reservation_s() -> int:
    return int(settings.CHAT_QUEUE_TIMEOUT_S) + RESERVATION_WRITE_S


DAY_KEY_S = 2 * 24 * 3600  # a day's count lives two days past its day; a deleted person's mark as long

# Hold ``amount`` of the allowance under ``field`` when today's count plus what is held is under it (expired
# holds are dropped on the way). KEYS: today's count, the holds (hash), the deleted mark. ARGV: allowance, amount,
# field, now, expiry, the hash's life. Returns 1 (held), 0 (the allowance is reached), -1 (a deleted person).
_RESERVE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local now = tonumber(ARGV[4])
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
local held = redis.call('HGETALL', KEYS[2])
for i = 1, #held, 2 do
  local sep = string.find(held[i + 1], ':', 1, true)
  if tonumber(string.sub(held[i + 1], sep + 1)) <= now then
    redis.call('HDEL', KEYS[2], held[i])
  else
    total = total + tonumber(string.sub(held[i + 1], 1, sep - 1))
  end
end
if total >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[2] .. ':' .. ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
"""
# Let the hold ``field`` go (when named) and charge ``tokens`` to today's count, unless the person was deleted.
# KEYS as above; ARGV: field (or ''), tokens, the count's life.
_SETTLE = """
if ARGV[1] ~= '' then redis.call('HDEL', KEYS[2], ARGV[1]) end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  redis.call('INCRBY', KEYS[1], tokens)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return tokens
"""


def _keys(user_id: int) -> list[str]:
    return [tokens_key(user_id, _today()), reserved_key(user_id), gone_key(user_id)]


def _reserve(user_id: int, allowance: Allowance, tokens: int, field: str) -> int:
    now, life = int(time.time()), _reservation_s()
    return int(
        client().eval(
            _RESERVE, 3, *_keys(user_id), allowance.tokens_per_day, max(0, int(tokens)), field, now, now + life, life
        )
    )


def tokens_reserve(user_id: int, allowance: Allowance, tokens: int) -> str:
    """Hold ``tokens`` (a bound of what a reply about to be admitted can cost) of the person's day, or refuse it
    (``quota_exhausted``) when today's tokens and those already held reach the allowance. Returns the
    reservation's name, which the reply keeps (``Message.reservation``) until ``tokens_settle``; "" when the day
    is not limited (nothing is held)."""
    if allowance.tokens_per_day <= 0:
        return ""
    field = uuid.uuid4().hex
    try:
        held = _reserve(user_id, allowance, tokens, field)
    except RedisError:
        raise ChatError(ErrorCode.UNAVAILABLE, UNAVAILABLE) from None
    if held != 1:
        raise _exhausted(allowance)
    return field


def title_reserve(user_id: int, allowance: Allowance, tokens: int, field: str) -> bool:
    """The worker, before it asks the model for a title: hold its bound as a reply's is held. False when the
    person is at their allowance, was deleted, or Redis cannot say: then no title is made (and nothing charged)."""
    if allowance.tokens_per_day <= 0:  # nothing to hold; still nothing for a deleted person
        return not _gone(user_id)
    try:
        return _reserve(user_id, allowance, tokens, field) == 1
    except RedisError:
        log.warning("could not reserve a title's tokens for user %s", user_id, exc_info=True)
        return False


def _gone(user_id: int) -> bool:
    try:
        return bool(client().exists(gone_key(user_id)))
    except RedisError:
        return True


def tokens_settle(user_id: int, reservation: str, tokens: int) -> None:
    """A reply's (or a title's) end: charge what it really used to the person's day and let its reservation go,
    in one step. A deleted person is charged nothing. A Redis failure is logged, never raised: the reply has
    been written and stored; losing its count is the lesser harm (the reservation lapses by itself)."""
    try:
        client().eval(_SETTLE, 3, *_keys(user_id), reservation or "", max(0, int(tokens)), DAY_KEY_S)
    except RedisError:
        log.warning("could not count %s tokens for user %s", tokens, user_id, exc_info=True)


def tokens_count(user_id: int, tokens: int) -> None:
    """Charge tokens no reservation holds (a reply whose end was stored elsewhere first: its reservation went
    then) to the person's day; nothing for a deleted person. Logged, never raised, like ``tokens_settle``."""
    if tokens > 0:
        tokens_settle(user_id, "", tokens)


def tokens_held(user_id: int) -> int:
    """Tokens reserved for the person's replies not yet ended (expired reservations left out)."""
    now = time.time()
    total = 0
    for value in client().hvals(reserved_key(user_id)):
        amount, _, expires = value.partition(":")
        if float(expires) > now:
            total += int(amount)
    return total


def counters_forget(user_id: int, allowance: Allowance) -> None:
    """Forget a deleted person's counters: every day's tokens still kept, their reservations and their minute's
    window (for ``allowance``; a window under an allowance changed within the last minute expires by itself a
    minute on), and mark them gone for as long as a day's count lives, so a reply or title of theirs ending
    later charges nothing and recreates no counter. A Redis failure is logged: the keys expire by themselves
    (tokens two days after their day)."""
    days = [_today() - datetime.timedelta(days=n) for n in range(3)]  # a key lives two days past its day
    try:
        pipe = client().pipeline(transaction=True)
        pipe.set(gone_key(user_id), 1, ex=DAY_KEY_S)
        pipe.delete(reserved_key(user_id), *(tokens_key(user_id, day) for day in days))
        pipe.execute()
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
