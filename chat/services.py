"""Writes. Keyword-only and atomic; channel frames and tasks fire on commit, in order, so a client always
sees the stored message before any delta of its reply. No network call inside a write transaction: the
worker check runs before it (a SQLite writer holds the whole database's lock).

``message_finish`` is the one place a reply ends — the worker's end, Stop, the sweep and a failed dispatch all
go through it — and it alone sends ``done``. ``reply_stop`` is the one way a reply is stopped, by its owner or
by a reviewer.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from chat import admission, events, metrics, quotas, selectors
from chat.errors import ChatError
from chat.models import ApiKey, Conversation, Feedback, Message
from chat.params import generation_params_clean

log = logging.getLogger(__name__)

# NUL and other C0 controls (but tab and newlines), DEL, and lone surrogates that no database can store.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
TITLE_CHARS = 60
FEEDBACK_COMMENT_CHARS = 2000
# The Celery task that writes a reply (chat.worker.generate_reply); the name predates its module and is kept so
# tasks queued by an older release still run.
GENERATE_REPLY_TASK = "inference.tasks.generate_reply"
BUSY = "A reply is still being written in this conversation; wait or press Stop."


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
    reply_dispatch(message_id=message.id)


def reply_dispatch(*, message_id: int) -> None:
    """Queue generation (also again, for a reply handed to a worker that died: ``sweep``); when the broker is
    unreachable, fail the reply visibly instead of leaving it queued. Sent by name, so web processes never
    import the worker's model code."""
    from celery import current_app

    try:
        current_app.send_task(GENERATE_REPLY_TASK, args=[message_id])
    except Exception as exc:
        log.warning("could not queue message %s: %s", message_id, exc)
        message_finish(message_id=message_id, content="", status=Message.Status.FAILED,
                       finish_reason=Message.FinishReason.ERROR,
                       error="The generation queue is unreachable; try again in a moment.")


def _reply_create(*, conversation: Conversation, parent: Message, params: dict) -> Message:
    return Message.objects.create(
        conversation=conversation, parent=parent, role=Message.Role.ASSISTANT, status=Message.Status.QUEUED,
        model_name=conversation.model_name or settings.CHAT_MODEL, params=params,
    )


def _message_text(content) -> str:
    text = clean_text(content)
    if not text.strip():
        raise ChatError("empty", "Type a message first.")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ChatError("too_long", f"The message is too long: at most {settings.CHAT_MAX_MESSAGE_CHARS} characters.")
    return text


def message_send(*, user, conversation_id: int | None, content, params=None,
                 client_id: str | None = None) -> SendResult:
    """Store the user's message and a queued reply; on commit, tell the user's sockets and queue the task."""
    admission.require_approved(user)
    text = _message_text(content)
    clean_params = generation_params_clean(params)
    allowance = admission.admit(user.pk)
    with transaction.atomic():
        admission.require_capacity(user.pk, allowance)
        created = conversation_id is None
        if created:
            # A new conversation starts from the person's own defaults (the settings panel, with no chat open).
            defaults = selectors.chat_defaults_for(user=user)
            conversation = Conversation.objects.create(owner=user, title=title_from(text),
                                                       model_name=settings.CHAT_MODEL,
                                                       system_prompt=defaults["system_prompt"],
                                                       params=defaults["params"])
        else:
            conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
            # Lock the row: two sends racing into one conversation must not both start a reply.
            conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
            if selectors.message_active_in_conversation(conversation_id=conversation.pk):
                raise ChatError("busy", BUSY)
        parent = None if created else selectors.message_last_current(conversation=conversation)
        user_message = Message.objects.create(conversation=conversation, parent=parent, role=Message.Role.USER,
                                              content=text, status=Message.Status.COMPLETE)
        reply = _reply_create(conversation=conversation, parent=user_message,
                              params={**conversation.params, **clean_params})
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())

        def after_commit():
            if created:
                events.notify(user.id, events.conversation_frame(conversation, client_id))
            events.notify(user.id, events.message_frame(user_message, client_id))
            events.notify(user.id, events.message_frame(reply, client_id))
            _dispatch(reply)

        transaction.on_commit(after_commit)
    return SendResult(conversation, created, user_message, reply)


def _leave_branch(*, conversation_id: int, message_id: int) -> None:
    """Take a message and the shown messages below it off the shown branch (they stay, as an alternative)."""
    rows = selectors.thread_rows(conversation_id=conversation_id)
    Message.objects.filter(pk__in=selectors.current_below(rows, message_id)).update(is_current=False)


def _lock_idle_conversation(conversation_id: int) -> Conversation:
    """Lock the conversation's row; refuse when a reply is being written in it (one reply at a time)."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    if selectors.message_active_in_conversation(conversation_id=conversation.pk):
        raise ChatError("busy", BUSY)
    return conversation


def _branch_off(old: Message, off_branch: ChatError) -> Conversation:
    """Inside the write transaction of an edit or a regenerate: lock the idle conversation, refuse (``off_branch``)
    when ``old`` is not on the shown branch any more, and take it and what follows it off that branch."""
    conversation = _lock_idle_conversation(old.conversation_id)
    old.refresh_from_db(fields=["is_current"])
    if not old.is_current:
        raise off_branch
    _leave_branch(conversation_id=conversation.pk, message_id=old.pk)
    return conversation


def _siblings(message: Message) -> list[int]:
    return selectors.siblings_in(selectors.thread_rows(conversation_id=message.conversation_id), message.pk)


def message_regenerate(*, user, message_id, params=None, client_id: str | None = None) -> Message:
    """Write a new reply in place of any reply on the shown branch. The old reply and what followed it stay as
    an alternative (``is_current`` False); the new reply answers the same message."""
    admission.require_approved(user)
    old = selectors.message_get_for_user(user=user, message_id=message_id)
    clean_params = generation_params_clean(params)
    if old.role != Message.Role.ASSISTANT:
        raise ChatError("not_regenerable", "Only an assistant reply can be regenerated.")
    allowance = admission.admit(user.pk)
    with transaction.atomic():
        admission.require_capacity(user.pk, allowance)
        conversation = _branch_off(old, ChatError("not_regenerable", "Only a reply on the branch you see can be "
                                                                     "regenerated; switch to it first."))
        # The conversation's settings as they are now (the settings panel applies to the next reply), then the
        # params of this one request.
        reply = _reply_create(conversation=conversation, parent=old.parent,
                              params={**conversation.params, **clean_params})
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
        siblings = _siblings(reply)

        def after_commit():
            events.notify(user.id, events.message_frame(reply, client_id, replaces=old.pk, siblings=siblings))
            _dispatch(reply)

        transaction.on_commit(after_commit)
    return reply


class StopOutcome(StrEnum):
    """What a stop did: ended a queued reply now, asked the worker to end a streaming one, or found it ended."""

    STOPPED = "stopped"
    STOPPING = "stopping"
    ALREADY_FINISHED = "already_finished"


def reply_stop(*, message: Message) -> StopOutcome:
    """The one way a reply is stopped, whoever asks (its owner: ``message_stop``; a reviewer:
    ``review.generation_cancel``); callers check who may. Queued: it ends now, empty. Streaming: the stop is
    stored and every worker is told; the one holding it ends it within a step (or at its next checkpoint, if
    the broadcast was lost) and stores the text so far. Already finished: nothing happens (a stop may race the
    end)."""
    with transaction.atomic():
        if message_finish(message_id=message.pk, content="", status=Message.Status.STOPPED,
                          finish_reason=Message.FinishReason.CANCELLED, only_from=(Message.Status.QUEUED,)):
            return StopOutcome.STOPPED
        if Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).update(stop_requested=True):
            transaction.on_commit(lambda: events.broadcast_cancel_sync(message.pk))
            return StopOutcome.STOPPING
    return StopOutcome.ALREADY_FINISHED


def message_edit(*, user, message_id, content, params=None, client_id: str | None = None) -> SendResult:
    """Send an edited version of one of the person's earlier messages: a new user message beside the old one
    (same parent) and a new reply to it. The old message and what followed it stay as an alternative."""
    old = selectors.message_get_for_user(user=user, message_id=message_id)
    if old.role != Message.Role.USER:
        raise ChatError("not_editable", "Only your own messages can be edited.")
    admission.require_approved(user)
    text = _message_text(content)
    clean_params = generation_params_clean(params)
    allowance = admission.admit(user.pk)
    with transaction.atomic():
        admission.require_capacity(user.pk, allowance)
        conversation = _branch_off(old, ChatError("not_editable", "Only a message on the branch you see can be "
                                                                  "edited; switch to it first."))
        user_message = Message.objects.create(conversation=conversation, parent=old.parent, role=Message.Role.USER,
                                              content=text, status=Message.Status.COMPLETE)
        reply = _reply_create(conversation=conversation, parent=user_message,
                              params={**conversation.params, **clean_params})
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
        siblings = _siblings(user_message)

        def after_commit():
            events.notify(user.id, events.message_frame(user_message, client_id, replaces=old.pk,
                                                        siblings=siblings))
            events.notify(user.id, events.message_frame(reply, client_id))
            _dispatch(reply)

        transaction.on_commit(after_commit)
    return SendResult(conversation, False, user_message, reply)


def message_switch(*, user, message_id) -> Message:
    """Show another alternative of a message: it and the newest messages below it become the shown branch, so
    the next message continues from there. Every tab of the person is told to reload the thread."""
    target = selectors.message_get_for_user(user=user, message_id=message_id)
    with transaction.atomic():
        conversation = _lock_idle_conversation(target.conversation_id)
        rows = selectors.thread_rows(conversation_id=conversation.pk)
        parent = rows[target.pk]["parent_id"]
        if parent is not None and not rows[parent]["is_current"]:
            raise ChatError("not_switchable", "That message is not on the branch you see; switch above it first.")
        shown = [i for i in selectors.siblings_in(rows, target.pk) if rows[i]["is_current"]]
        if shown != [target.pk]:
            for i in shown:
                Message.objects.filter(pk__in=selectors.current_below(rows, i)).update(is_current=False)
            Message.objects.filter(pk__in=selectors.newest_path_from(rows, target.pk)).update(is_current=True)
        transaction.on_commit(lambda: events.notify(user.id, events.thread_frame(conversation.pk)))
    return target


@transaction.atomic
def message_stop(*, user, message_id) -> Message:
    """The owner's Stop of one of their replies (``reply_stop``); returns the reply as it now stands."""
    message = selectors.message_get_for_user(user=user, message_id=message_id)
    if message.role != Message.Role.ASSISTANT:
        raise ChatError("not_stoppable", "Only an assistant reply can be stopped.")
    reply_stop(message=message)
    message.refresh_from_db()
    return message


def message_start(*, message_id: int) -> Message | None:
    """Worker: claim a queued reply (queued → streaming). None when it was stopped, claimed or deleted."""
    claimed = Message.objects.filter(pk=message_id, status=Message.Status.QUEUED).update(
        status=Message.Status.STREAMING, started_at=timezone.now())
    if not claimed:
        return None
    return Message.objects.select_related("conversation").get(pk=message_id)


def message_checkpoint(*, message_id: int, content: str, dropped_messages: int | None = None) -> bool:
    """Worker: save the partial text of a streaming reply, so a crash loses at most one interval. False when
    the reply should end now: Stop was pressed (its broadcast may have been lost) or it ended elsewhere."""
    fields = {"content": content}
    if dropped_messages is not None:
        fields["dropped_messages"] = dropped_messages
    return bool(Message.objects.filter(pk=message_id, status=Message.Status.STREAMING, stop_requested=False)
                .update(**fields))


def message_finish(*, message_id: int, content: str | None, status: str, finish_reason: str,
                   prompt_tokens: int | None = None, completion_tokens: int | None = None,
                   ttft_ms: int | None = None, tokens_per_s: float | None = None, error: str = "",
                   error_code: str = "", params: dict | None = None,
                   only_from: tuple[str, ...] = Message.ACTIVE_STATUSES) -> Message | None:
    """End a reply once: store its final state and, on commit, send ``done`` to its owner's sockets.
    ``content=None`` keeps the stored text (the last checkpoint). Returns the message, or None when it had
    already ended (then nothing is sent)."""
    fields = dict(status=status, finish_reason=finish_reason, prompt_tokens=prompt_tokens,
                  completion_tokens=completion_tokens, ttft_ms=ttft_ms, tokens_per_s=tokens_per_s,
                  error=error, error_code=error_code, finished_at=timezone.now())
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
            # Charged here, where every reply ends once: the worker's own count of what the reply cost.
            quotas.tokens_count(final.conversation.owner_id, (prompt_tokens or 0) + (completion_tokens or 0))
            events.notify(final.conversation.owner_id, events.done_frame(final))
            # Counted once, when the end is stored (an end that lost the race above is not a reply).
            metrics.observe_reply(status=status, ttft_ms=ttft_ms, tokens_per_s=tokens_per_s,
                                  prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

        transaction.on_commit(after_commit)
    return final


def _forget_text(final: Message) -> None:
    """A conversation whose API key keeps no text: once its reply has ended, every text of it goes (the worker
    needed the prompt until now); counts, timings and the finish reason stay."""
    Message.objects.filter(conversation_id=final.conversation_id).update(content="")
    Conversation.objects.filter(pk=final.conversation_id).update(system_prompt="")
    final.content = ""


# --- the OpenAI-compatible API (chat/api/) -----------------------------------------------------------------
def api_completion_create(*, key: ApiKey, turns: list[dict], params: dict, end_user: str = "") -> Message:
    """One API request as a new conversation of the key's owner: its system prompt, its turns as stored
    messages, and a queued reply, dispatched to the same workers under the same per-person limits as the
    chat's (approval, replies at once, tokens today, messages a minute). ``turns`` are ``{"role", "content"}``
    with role system, user or assistant, the last a user's."""
    user = key.owner
    system = "\n\n".join(clean_text(t["content"]) for t in turns if t["role"] == "system")
    chat_turns = [{"role": t["role"], "content": clean_text(t["content"])} for t in turns if t["role"] != "system"]
    if not chat_turns or chat_turns[-1]["role"] != Message.Role.USER or not chat_turns[-1]["content"].strip():
        raise ChatError("empty", "The last message must be a user's, with some text.")
    if any(len(t["content"]) > settings.CHAT_MAX_MESSAGE_CHARS for t in chat_turns + [{"content": system}]):
        raise ChatError("too_long", f"A message is too long: at most {settings.CHAT_MAX_MESSAGE_CHARS} characters.")
    total = len(system) + sum(len(t["content"]) for t in chat_turns)
    if total > settings.CHAT_API_MAX_REQUEST_CHARS:
        raise ChatError("too_long", f"The messages are too long together: at most "
                                    f"{settings.CHAT_API_MAX_REQUEST_CHARS} characters in one request, not {total}.")
    admission.require_approved(user)
    clean_params = generation_params_clean(params)
    allowance = admission.admit(user.pk)
    with transaction.atomic():
        # The key was checked when the request came; locked and checked again here, a revoke running now waits
        # for this reply to be stored and then stops it with the key's others (api_keys.api_key_revoke).
        if not ApiKey.objects.select_for_update().filter(pk=key.pk, revoked_at__isnull=True).exists():
            raise ChatError("key_revoked", "This API key has been revoked.")
        admission.require_capacity(user.pk, allowance)
        kept = key.store_conversations
        conversation = Conversation.objects.create(
            owner=user, title=title_from(chat_turns[-1]["content"]) if kept else "", system_prompt=system,
            model_name=settings.CHAT_MODEL, source=Conversation.Source.API, api_key=key, api_key_name=key.name,
            api_user=clean_text(end_user)[:256], content_kept=kept)
        parent = None
        for turn in chat_turns:
            parent = Message.objects.create(conversation=conversation, parent=parent, role=turn["role"],
                                            content=turn["content"], status=Message.Status.COMPLETE,
                                            supplied=turn["role"] == Message.Role.ASSISTANT)
        reply = _reply_create(conversation=conversation, parent=parent, params=clean_params)
        transaction.on_commit(lambda: _dispatch(reply))
    return reply


def feedback_set(*, user, message_id, rating, comment="") -> Feedback | None:
    """Rate a finished reply in one of the user's own conversations: +1 or -1 with an optional comment,
    replacing the user's earlier rating of it; 0 takes the rating back (returns None)."""
    # bool is an int in Python; a stray true must not read as a thumb up.
    if isinstance(rating, bool) or rating not in (1, -1, 0):
        raise ChatError("invalid_rating", "A rating is 1 (good) or -1 (bad), or 0 to take it back.")
    text = clean_text(comment).strip()
    if len(text) > FEEDBACK_COMMENT_CHARS:
        raise ChatError("too_long", f"The comment is too long: at most {FEEDBACK_COMMENT_CHARS} characters.")
    message = selectors.message_get_for_user(user=user, message_id=message_id)
    if message.role != Message.Role.ASSISTANT:
        raise ChatError("not_rateable", "Only an assistant reply can be rated.")
    if message.supplied:
        raise ChatError("not_rateable", "This turn was written by the program that called the API, not by the "
                                        "model; only the model's replies can be rated.")
    if message.is_active:
        raise ChatError("not_rateable", "This reply is still being written; rate it once it has finished.")
    with transaction.atomic():
        if rating == 0:
            Feedback.objects.filter(message=message, user=user).delete()
            transaction.on_commit(lambda: events.notify(user.id, events.feedback_frame(message.pk, 0, "")))
            return None
        feedback, _ = Feedback.objects.update_or_create(message=message, user=user,
                                                        defaults={"rating": int(rating), "comment": text})
        transaction.on_commit(lambda: events.notify(user.id, events.feedback_frame(message.pk, int(rating), text)))
    return feedback


def title_from(text: str) -> str:
    """The first words of a text, on one line, at most TITLE_CHARS long."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
