"""Writes. Keyword-only, atomic; channel events and tasks fire on commit, in order, so a client always
sees the stored message before any delta of its reply."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import events, selectors
from .errors import ChatError
from .models import Conversation, Message
from .params import generation_params_clean

log = logging.getLogger(__name__)

# NUL and other C0 controls (but tab and newlines), DEL, and lone surrogates that no database can store.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
TITLE_CHARS = 60


def clean_text(text) -> str:
    """Text safe to store: unsafe characters dropped. HTML stays as typed; pages escape it."""
    if not isinstance(text, str):
        raise ChatError("invalid_content", "content must be text.")
    return _UNSAFE_CHARS.sub("", text)


@dataclass
class SendResult:
    conversation: Conversation
    created: bool
    user_message: Message
    assistant_message: Message


def _dispatch(message: Message) -> None:
    """Queue generation; when the broker is unreachable, fail the reply visibly instead of leaving it queued."""
    from inference.tasks import generate_reply

    try:
        generate_reply.delay(message.id)
    except Exception as exc:
        log.warning("could not queue message %s: %s", message.id, exc)
        failed = message_finish(message_id=message.id, content="", status=Message.Status.FAILED,
                                finish_reason=Message.FinishReason.ERROR,
                                error="The generation queue is unreachable; try again in a moment.")
        if failed:
            notify(failed.conversation.owner_id, events.done_event(failed))


def notify(user_id: int, event: dict) -> None:
    try:
        events.send_to_user_sync(user_id, event)
    except Exception:  # the stored state is the truth; a lost notification is caught up by subscribe
        log.warning("could not publish %s to user %s", event.get("type"), user_id, exc_info=True)


def _require_worker() -> None:
    """Refuse a new reply when no worker could write it: better a clear answer now than a silent queue."""
    from redis.exceptions import RedisError

    from . import liveness

    try:
        alive = liveness.workers_alive()
    except RedisError:
        raise ChatError("unavailable", "The server cannot reach its queue right now; try again in a moment.") \
            from None
    if not alive:
        raise ChatError("no_worker", "No model worker is running right now, so nobody can answer. "
                                     "Nothing was stored; try again in a minute.")


def _reply_create(*, conversation: Conversation, parent: Message, params: dict) -> Message:
    return Message.objects.create(
        conversation=conversation, parent=parent, role=Message.Role.ASSISTANT, status=Message.Status.QUEUED,
        model_name=conversation.model_name or settings.CHAT_MODEL, params=params,
    )


@transaction.atomic
def message_send(*, user, conversation_id: int | None, content, params=None,
                 client_id: str | None = None) -> SendResult:
    """Store the user's message and a queued reply; on commit, tell the user's sockets and queue the task."""
    text = clean_text(content)
    if not text.strip():
        raise ChatError("empty", "Type a message first.")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ChatError("too_long", f"The message is too long: at most {settings.CHAT_MAX_MESSAGE_CHARS} characters.")
    clean_params = generation_params_clean(params)
    _require_worker()
    created = conversation_id is None
    if created:
        conversation = Conversation.objects.create(owner=user, title=_title_from(text), model_name=settings.CHAT_MODEL)
    else:
        conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
        # Lock the row: two sends racing into one conversation must not both start a reply.
        conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if selectors.message_active_in_conversation(conversation_id=conversation.pk):
            raise ChatError("busy", "A reply is still being written in this conversation; wait or press Stop.")
    parent = None if created else selectors.message_last_current(conversation=conversation)
    user_message = Message.objects.create(conversation=conversation, parent=parent, role=Message.Role.USER,
                                          content=text, status=Message.Status.COMPLETE)
    reply = _reply_create(conversation=conversation, parent=user_message,
                          params={**conversation.params, **clean_params})
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())

    def after_commit():
        if created:
            notify(user.id, events.conversation_event(conversation))
        notify(user.id, events.message_event(user_message, client_id))
        notify(user.id, events.message_event(reply, client_id))
        _dispatch(reply)

    transaction.on_commit(after_commit)
    return SendResult(conversation, created, user_message, reply)


@transaction.atomic
def message_regenerate(*, user, message_id, params=None, client_id: str | None = None) -> Message:
    """Replace the newest reply with a new one. The old reply stays as an alternative (``is_current`` False)."""
    old = selectors.message_get_for_user(user=user, message_id=message_id)
    clean_params = generation_params_clean(params)
    if old.role != Message.Role.ASSISTANT:
        raise ChatError("not_regenerable", "Only an assistant reply can be regenerated.")
    conversation = Conversation.objects.select_for_update().get(pk=old.conversation_id)
    if selectors.message_active_in_conversation(conversation_id=conversation.pk):
        raise ChatError("busy", "A reply is still being written in this conversation; wait or press Stop.")
    if not old.is_current or selectors.message_last_current(conversation=conversation).pk != old.pk:
        raise ChatError("not_regenerable", "Only the latest reply can be regenerated.")
    _require_worker()
    Message.objects.filter(pk=old.pk).update(is_current=False)
    reply = _reply_create(conversation=conversation, parent=old.parent,
                          params={**old.params, **clean_params} if clean_params else dict(old.params))
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())

    def after_commit():
        event = events.message_event(reply, client_id)
        event["replaces"] = old.pk
        notify(user.id, event)
        _dispatch(reply)

    transaction.on_commit(after_commit)
    return reply


@transaction.atomic
def message_stop(*, user, message_id) -> Message:
    """Stop a reply. Queued: it ends now, empty. Streaming: every worker is told; the one holding it ends it
    within a step and stores the text so far. Already finished: nothing happens (a stop may race the end)."""
    message = selectors.message_get_for_user(user=user, message_id=message_id)
    if message.role != Message.Role.ASSISTANT:
        raise ChatError("not_stoppable", "Only an assistant reply can be stopped.")
    stopped_now = message_finish(message_id=message.pk, content="", status=Message.Status.STOPPED,
                                 finish_reason=Message.FinishReason.CANCELLED, only_from=(Message.Status.QUEUED,))
    if stopped_now:
        transaction.on_commit(lambda: notify(user.id, events.done_event(stopped_now)))
        return stopped_now
    message.refresh_from_db()
    if message.status == Message.Status.STREAMING:
        transaction.on_commit(lambda: events.broadcast_cancel_sync(message.pk))
    return message


def message_start(*, message_id: int) -> Message | None:
    """Worker: claim a queued reply (queued → streaming). None when it was stopped, claimed or deleted."""
    claimed = Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
        status=Message.Status.STREAMING, started_at=timezone.now())
    if not claimed:
        return None
    return Message.objects.select_related("conversation").get(pk=message_id)


def message_checkpoint(*, message_id: int, content: str) -> None:
    """Worker: save the partial text of a streaming reply, so a crash loses at most one interval."""
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(content=content)


def message_finish(*, message_id: int, content: str, status: str, finish_reason: str,
                   prompt_tokens: int | None = None, completion_tokens: int | None = None,
                   ttft_ms: int | None = None, tokens_per_s: float | None = None, error: str = "",
                   params: dict | None = None,
                   only_from: tuple[str, ...] = Message.ACTIVE_STATUSES) -> Message | None:
    """Store a reply's final state once. Returns it, or None when it had already ended."""
    fields = dict(content=content, status=status, finish_reason=finish_reason, prompt_tokens=prompt_tokens,
                  completion_tokens=completion_tokens, ttft_ms=ttft_ms, tokens_per_s=tokens_per_s,
                  error=error, finished_at=timezone.now())
    if params is not None:
        fields["params"] = params
    updated = Message.objects.filter(pk=message_id, status__in=only_from).update(**fields)
    if not updated:
        return None
    return Message.objects.select_related("conversation").get(pk=message_id)


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
