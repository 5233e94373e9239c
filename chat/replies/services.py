"""A reply's life once queued: dispatch (the Celery task, by name), claim, checkpoints, stop, and its one end.

``reply_finish`` is the one place a reply ends — the worker's end, Stop, the sweep and a failed dispatch all go
through it — and it alone sends ``done``. ``reply_stop`` is the one way a reply is stopped, by its owner or by a
reviewer. Keyword-only; frames and tasks fire on commit.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import events, metrics, names
from chat.errors import ErrorCode
from chat.limits import quotas
from chat.models import Conversation, Message
from chat.replies import catalog

log = logging.getLogger(__name__)


def reply_dispatch(*, message_id: int, model: str | None = None) -> None:
    """Queue generation on the queue of the reply's model (``model``, else read from the row) — also again, for
    a reply handed to a worker that died (``sweep``: it stays within its model); when the broker is unreachable,
    fail the reply visibly instead of leaving it queued. Sent by name, so web processes never import the
    worker's model code."""
    from celery import current_app

    try:
        if model is None:
            model = Message.objects.filter(pk=message_id).values_list("model_name", flat=True).first() or ""
        model = model or settings.CHAT_DEFAULT_MODEL
        queue = names.model_queue(catalog.worker_model(model))  # an adapter's: its base model's queue
        current_app.send_task(names.GENERATE_REPLY_TASK, args=[message_id], kwargs={"model": model}, queue=queue)
    except Exception as exc:
        log.warning("could not queue message %s: %s", message_id, exc)
        reply_finish(
            message_id=message_id,
            content=None,  # a new reply has none; a continued one keeps its text
            status=Message.Status.FAILED,
            finish_reason=Message.FinishReason.ERROR,
            error="The generation queue is unreachable; try again in a moment.",
        )


def reply_create(
    *,
    conversation: Conversation,
    parent: Message,
    params: dict,
    reservation: str = "",
    model: str | None = None,
    is_current: bool = True,
    shown_model: str = "",
) -> Message:
    """A queued reply to ``parent`` by ``model`` (default: the conversation's), keeping the name of the tokens
    admission reserved for it (settled at its end); the caller dispatches it on commit (``reply_dispatch``)."""
    return Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.QUEUED,
        is_current=is_current,
        model_name=(name := model or conversation.model_name or settings.CHAT_DEFAULT_MODEL),
        shown_model_name=shown_model if shown_model and shown_model != name else "",
        params=params,
        reservation=reservation,
    )


class StopOutcome(StrEnum):
    """What a stop did: ended a queued reply now, asked the worker to end a streaming one, or found it ended."""

    STOPPED = "stopped"
    STOPPING = "stopping"
    ALREADY_FINISHED = "already_finished"


def reply_stop(*, message: Message) -> StopOutcome:
    """The one way a reply is stopped, whoever asks (its owner: ``message_stop``; a reviewer:
    ``review.reply_cancel``); callers check who may. Queued: it ends now, empty. Streaming: the stop is
    stored and every worker is told; the one holding it ends it within a step (or at its next checkpoint, if
    the broadcast was lost) and stores the text so far. Already finished: nothing happens (a stop may race the
    end)."""
    with transaction.atomic():
        if reply_finish(
            message_id=message.pk,
            content=None,  # a new reply has none; a continued one keeps its text
            status=Message.Status.STOPPED,
            finish_reason=Message.FinishReason.CANCELLED,
            only_from=(Message.Status.QUEUED,),
        ):
            return StopOutcome.STOPPED
        if Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).update(stop_requested=True):
            transaction.on_commit(lambda: events.broadcast_cancel_sync(message.pk))
            return StopOutcome.STOPPING
    return StopOutcome.ALREADY_FINISHED


def replies_end_for_deletion(*, conversation_ids: list[int]) -> None:
    """Before conversations are deleted (by their owner or a superuser): every reply of theirs still being
    written ends now, stopped. A queued one never starts; a streaming one's worker finds its row gone, ends
    quietly and is still charged for what it generated (its own end finds no row to settle)."""
    for message_id in Message.objects.filter(
        conversation_id__in=conversation_ids, status__in=Message.ACTIVE_STATUSES
    ).values_list("pk", flat=True):
        reply_finish(
            message_id=message_id,
            content=None,
            status=Message.Status.STOPPED,
            finish_reason=Message.FinishReason.CANCELLED,
        )


def reply_model(*, message_id: int) -> str | None:
    """The model a reply is to be written by (None: no such reply)."""
    return Message.objects.filter(pk=message_id).values_list("model_name", flat=True).first()


def reply_claim(*, message_id: int, worker: str = "") -> Message | None:
    """Worker: claim a queued reply (queued → streaming), storing which worker writes it. None when it was
    stopped, claimed or deleted."""
    claimed = Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
        status=Message.Status.STREAMING, started_at=timezone.now(), worker=worker
    )
    if not claimed:
        return None
    return Message.objects.select_related("conversation").get(pk=message_id)


def reply_checkpoint(*, message_id: int, content: str, dropped_messages: int | None = None) -> bool:
    """Worker: save the partial text of a streaming reply, so a crash loses at most one interval. False when
    the reply should end now: Stop was pressed (its broadcast may have been lost) or it ended elsewhere."""
    fields = {"content": content}
    if dropped_messages is not None:
        fields["dropped_messages"] = dropped_messages
    return bool(
        Message.objects.filter(pk=message_id, status=Message.Status.STREAMING, stop_requested=False).update(**fields)
    )


def reply_finish(
    *,
    message_id: int,
    content: str | None,
    status: Message.Status,
    finish_reason: Message.FinishReason,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    ttft_ms: int | None = None,
    tokens_per_s: float | None = None,
    error: str = "",
    error_code: ErrorCode | str = "",
    params: dict | None = None,
    only_from: tuple[str, ...] = Message.ACTIVE_STATUSES,
    charged: int | None = None,
) -> Message | None:
    """End a reply once: store its final state and, on commit, send ``done`` to its owner's sockets.
    ``content=None`` keeps the stored text (the last checkpoint); counts and timings left None keep the stored
    ones (none for a new reply; a continued reply's earlier ones: chat/conversations/continuation.py).
    ``charged``: the tokens its person is charged, when not its prompt and completion tokens (a continued
    reply's completion tokens count its earlier runs, charged then). Returns the message, or None when it had
    already ended (then nothing is sent)."""
    fields = dict(status=status, finish_reason=finish_reason, error=error, error_code=error_code)
    fields["finished_at"] = timezone.now()
    counts = dict(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, ttft_ms=ttft_ms, tokens_per_s=tokens_per_s
    )
    fields.update({name: value for name, value in counts.items() if value is not None})
    if charged is None:
        charged = (prompt_tokens or 0) + (completion_tokens or 0)
    if content is not None:
        fields["content"] = content
    if params is not None:
        fields["params"] = params
    with transaction.atomic():
        if not Message.objects.filter(pk=message_id, status__in=only_from).update(**fields):
            return None
        final = Message.objects.select_related("conversation").get(pk=message_id)
        if not final.conversation.content_kept:
            _forget_text(final)

        def after_commit():
            # Charged here, where every reply ends once: the worker's own count of what the reply cost, and
            # the bound admission reserved for it let go in the same step.
            quotas.tokens_settle(final.conversation.owner_id, final.reservation, charged)
            events.notify(final.conversation.owner_id, events.done_frame(final))
            # Counted once, when the end is stored (an end that lost the race above is not a reply).
            metrics.observe_reply(
                status=status,
                ttft_ms=ttft_ms,
                tokens_per_s=tokens_per_s,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )

        transaction.on_commit(after_commit)
    return final


def _forget_text(final: Message) -> None:
    """A conversation whose API key keeps no text: once its reply has ended, every text of it goes (the worker
    needed the prompt until now); counts, timings and the finish reason stay."""
    Message.objects.filter(conversation_id=final.conversation_id).update(content="")
    Conversation.objects.filter(pk=final.conversation_id).update(system_prompt="")
    final.content = ""
