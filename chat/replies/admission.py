"""Who may start a new reply now, checked before (and, for the cap, inside) the write transaction that stores
it: the person's approval, replies at once, today's tokens, a live worker, messages per minute. Every path
that starts a reply — send, regenerate, edit, the API — goes through ``admit`` then ``require_capacity``.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model

from chat.accounts import selectors as account_selectors
from chat.errors import ChatError, ErrorCode
from chat.limits import quotas
from chat.replies import liveness
from chat.replies import selectors as reply_selectors


def require_worker() -> None:
    """Refuse a new reply when no worker could write it: better a clear answer now than a silent queue."""
    from redis.exceptions import RedisError

    try:
        alive = liveness.workers_alive()
    except RedisError:
        raise ChatError(
            ErrorCode.UNAVAILABLE, "The server cannot reach its queue right now; try again in a moment."
        ) from None
    if not alive:
        raise ChatError(
            ErrorCode.NO_WORKER,
            "No model worker is running right now, so nobody can answer. Nothing was stored; try again in a minute.",
        )


def require_approved(user) -> None:
    """People whose account awaits staff approval (``CHAT_SIGNUP=approval``) may look around but not chat."""
    if not account_selectors.account_may_chat(user=user):
        raise ChatError(ErrorCode.NOT_APPROVED, account_selectors.NOT_APPROVED)


def too_many_active(cap: int) -> ChatError:
    replies = "reply" if cap == 1 else "replies"
    return ChatError(
        ErrorCode.TOO_MANY_ACTIVE,
        f"You already have {cap} {replies} being written; wait for one to finish or press Stop, then send again.",
    )


def admit(user_id: int) -> quotas.Allowance:
    """Everything checked before a new reply's write transaction, cheapest first, none of it holding a lock:
    the cap on replies at once (a read: a person at the cap who keeps sending costs one read, not a write
    transaction, which on SQLite locks the whole database), today's tokens, a live worker, and last the
    person's messages per minute (last, so a send refused for another reason does not use up the minute)."""
    allowance = quotas.allowance_for(user_id)
    if reply_selectors.replies_active_for_user(user_id=user_id) >= allowance.max_active:
        raise too_many_active(allowance.max_active)
    quotas.require_tokens_left(user_id, allowance)
    require_worker()
    quotas.message_hit(user_id, allowance)
    return allowance


def require_capacity(user_id: int, allowance: quotas.Allowance) -> None:
    """At most ``allowance.max_active`` replies of one person queued or streaming at once, over all their
    conversations and sockets, so one person cannot fill the queue everyone shares. The person's row is locked
    first, so concurrent sends of one person are counted one after another."""
    get_user_model().objects.select_for_update().only("pk").get(pk=user_id)
    if reply_selectors.replies_active_for_user(user_id=user_id) >= allowance.max_active:
        raise too_many_active(allowance.max_active)
