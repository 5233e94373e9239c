"""The one funnel for channel-layer traffic: group names, frame builders and sends. Nothing else.

A channel-layer event is a frame (``chat/frames.py``) whose ``type`` carries the ``chat.`` prefix, so
Channels dispatches ``chat.delta`` to ``ChatConsumer.chat_delta``; the consumer strips the prefix and sends
the frame on. The stream log lives in ``chat/replies/streamlog.py``, the worker's link in ``chat/worker/link.py``.
"""

from __future__ import annotations

import logging
from typing import Callable

from channels.layers import get_channel_layer

from chat import names
from chat.errors import ErrorCode
from chat.frames import (
    ActivityFrame,
    ComparedFrame,
    ComparisonInfo,
    ConversationFrame,
    DeletedFrame,
    DeltaFrame,
    DoneFrame,
    ErrorFrame,
    FeedbackFrame,
    MessageFrame,
    MessageInfo,
    OrganisedFrame,
    QueuedFrame,
    SettingsFrame,
    ThreadFrame,
)

log = logging.getLogger(__name__)

EVENT_PREFIX = "chat."


# --- names, built only from ids the app issued ------------------------------------------------------------
# Two kinds of group (docs/protocol.md, "What a tab receives"). A person's group holds every socket of that person
# and carries the list-level frames: a conversation created, renamed, deleted or organised, settings, a reply
# started or ended somewhere (``activity``). A conversation's group holds the sockets that show it (a tab joins on
# ``subscribe`` and leaves when it shows another) and carries its replies: ``message``, ``delta``, ``done`` and
# ``thread``. So a token reaches the tabs looking at it, not every tab of its person.
CONVERSATION_FRAMES = frozenset({"message", "delta", "done", "thread"})
# The conversation a conversation-group event was sent to, for the socket to drop one still in flight from a group
# it has just left; never part of the frame sent on.
ROUTE_KEY = "via_conversation"


def user_group(user_id: int) -> str:
    """Group of every socket of one person: the list-level frames of all their conversations."""
    return f"chat.user.{int(user_id)}"


def conversation_group(conversation_id: int) -> str:
    """Group of the sockets (and API followers) showing one conversation: its replies' frames."""
    return f"chat.conversation.{int(conversation_id)}"


# --- frame builders ----------------------------------------------------------------------------------------
def message_payload(message) -> MessageInfo:
    """A message as the protocol shows it."""
    payload: MessageInfo = {
        "id": message.id,
        "conversation": message.conversation_id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
    }
    if message.role == "assistant":
        payload["model"] = message.shown_model_name or message.model_name  # blind in an A/B experiment
        payload["finish_reason"] = message.finish_reason
    attached = getattr(message, "attached", None)  # set by send on the message it stored with files
    if attached:
        payload["attachments"] = attached
    return payload


def comparison_payload(comparison) -> ComparisonInfo:
    return {
        "id": comparison.pk,
        "prompt": comparison.prompt_id,
        "first": comparison.first_id,
        "second": comparison.second_id,
        "blind": comparison.blind,
        "chosen": comparison.chosen_id,
    }


def compared_frame(comparison) -> ComparedFrame:
    return {"type": "compared", "comparison": comparison_payload(comparison)}


def conversation_frame(conversation, client_id: str | None = None) -> ConversationFrame:
    """With ``client_id``, the frame announces a conversation that send started (the tab that sent it adopts it)."""
    frame: ConversationFrame = {
        "type": "conversation",
        "conversation": {"id": conversation.id, "title": conversation.title},
    }
    if client_id:
        frame["client_id"] = client_id
    return frame


def message_frame(
    message, client_id: str | None = None, replaces: int | None = None, siblings: list[int] | None = None
) -> MessageFrame:
    frame: MessageFrame = {"type": "message", "message": message_payload(message)}
    if siblings is not None:
        frame["message"]["siblings"] = siblings
    if client_id:
        frame["client_id"] = client_id
    if replaces is not None:
        frame["replaces"] = replaces
    return frame


def delta_frame(message_id: int, seq: int, text: str) -> DeltaFrame:
    return {"type": "delta", "message": message_id, "seq": seq, "text": text}


def queued_frame(message_id: int, conversation_id: int, ahead: int) -> QueuedFrame:
    """A reply's place in its worker's waiting list: ``ahead`` replies go before it (inference/fairness.py)."""
    return {"type": "queued", "message": message_id, "conversation": conversation_id, "ahead": ahead}


def done_frame(message) -> DoneFrame:
    """The end of a reply: the stored text, counts, timings, and the stored error (a sentence, and its code
    where one applies) if it failed."""
    return {
        "type": "done",
        "message": message.id,
        "conversation": message.conversation_id,
        "status": message.status,
        "finish_reason": message.finish_reason,
        "content": message.content,
        "error": message.error,
        "error_code": message.error_code,
        "usage": {"prompt_tokens": message.prompt_tokens or 0, "completion_tokens": message.completion_tokens or 0},
        "timing": {"ttft_ms": message.ttft_ms, "tokens_per_s": message.tokens_per_s},
        "sources": list(message.sources or []),
    }


def activity_frame(conversation_id: int, message_id: int, state: str) -> ActivityFrame:
    """A reply in a conversation started or ended: the person's tabs that do not show it mark their lists."""
    return {"type": "activity", "conversation": int(conversation_id), "message": int(message_id), "state": state}


def thread_frame(conversation_id: int) -> ThreadFrame:
    """The shown branch of a conversation changed (a switch): tabs showing it reload it."""
    return {"type": "thread", "conversation": conversation_id}


def feedback_frame(message_id: int, rating: int, comment: str) -> FeedbackFrame:
    return {"type": "feedback", "message": message_id, "rating": rating, "comment": comment}


def settings_frame(conversation_id: int | None, system_prompt: str, params: dict, model: str) -> SettingsFrame:
    """A conversation's settings (or, with ``None``, the person's defaults for new conversations)."""
    return {
        "type": "settings",
        "conversation": conversation_id,
        "system_prompt": system_prompt,
        "params": dict(params),
        "model": model,
    }


def deleted_frame(conversation_id: int) -> DeletedFrame:
    return {"type": "deleted", "conversation": conversation_id}


def organised_frame(conversation_ids) -> OrganisedFrame:
    """Conversations (none: only a folder) were organised: the person's tabs reload their lists."""
    return {"type": "organised", "conversations": [int(i) for i in conversation_ids]}


def error_frame(code: ErrorCode, detail: str, client_id: str | None = None) -> ErrorFrame:
    """With ``client_id``, the refusal of the frame that carried it (the page gives back what was typed)."""
    frame: ErrorFrame = {"type": "error", "code": code, "detail": detail}
    if client_id:
        frame["client_id"] = client_id
    return frame


def session_ended_event(session_key: str) -> dict:
    """Tell a user's sockets that one session ended (logout): the sockets of that session close."""
    return {"type": "chat.session_ended", "session": session_key}


def cancel_event(message_id: int) -> dict:
    return {"type": names.REPLY_CANCEL_EVENT, "message": int(message_id)}


def as_event(frame: dict) -> dict:
    """The channel-layer event that carries ``frame``."""
    return {**frame, "type": EVENT_PREFIX + frame["type"]}


def as_frame(event: dict) -> dict:
    """The frame an event carries (the inverse of ``as_event``, less the route)."""
    frame = {**event, "type": event["type"].removeprefix(EVENT_PREFIX)}
    frame.pop(ROUTE_KEY, None)
    return frame


def conversation_of(frame: dict) -> int | None:
    """The conversation whose group carries ``frame``; None: the person's group does (a list-level frame). A
    delta names none (it is sent with its conversation, ``send_to_conversation``)."""
    if frame["type"] not in CONVERSATION_FRAMES:
        return None
    if frame["type"] == "message":
        return frame["message"]["conversation"]
    return frame.get("conversation")


def activity_of(frame: dict) -> ActivityFrame | None:
    """The list-level ``activity`` a reply frame implies: a reply queued (new, regenerated, continued) started;
    a ``done`` ended."""
    if frame["type"] == "done":
        return activity_frame(frame["conversation"], frame["message"], "ended")
    if frame["type"] == "message":
        m = frame["message"]
        if m["role"] == "assistant" and m["status"] == "queued":
            return activity_frame(m["conversation"], m["id"], "started")
    return None


# --- sends ---------------------------------------------------------------------------------------------
async def send_to_user(user_id: int, frame: dict, layer=None) -> None:
    """Publish a frame to all of a user's sockets."""
    await send_event_to_user(user_id, as_event(frame), layer)


async def send_to_conversation(conversation_id: int, frame: dict, layer=None) -> None:
    """Publish a frame to the sockets showing one conversation (a reply's ``delta`` from the worker, every token)."""
    event = {**as_event(frame), ROUTE_KEY: int(conversation_id)}
    await (layer or get_channel_layer()).group_send(conversation_group(conversation_id), event)


async def publish(user_id: int, frame: dict, person: bool = False, layer=None) -> None:
    """Publish a frame where it belongs: a reply's frames to its conversation's group (and, for a reply that
    starts or ends, an ``activity`` to the person's), everything else to the person's group. ``person``: to the
    person's group whatever it is (the first frames of a conversation just created, which no socket can show yet:
    the tab that sent its first message joins it only once they are out)."""
    conversation = None if person else conversation_of(frame)
    if conversation is None:
        await send_to_user(user_id, frame, layer)
    else:
        await send_to_conversation(conversation, frame, layer)
    activity = activity_of(frame)
    if activity is not None:
        await send_to_user(user_id, activity, layer)


async def send_event_to_user(user_id: int, event: dict, layer=None) -> None:
    """Publish a channel-layer event (a frame's, or a control event) to all of a user's sockets."""
    await (layer or get_channel_layer()).group_send(user_group(user_id), event)


async def broadcast_cancel(message_id: int, layer=None) -> None:
    """Tell every worker to stop generating ``message_id`` (whichever holds it acts)."""
    await (layer or get_channel_layer()).group_send(names.WORKERS_GROUP, cancel_event(message_id))


# Sync code (services on commit) publishes through this. In Daphne and views it is ``async_to_sync``, which
# finds the server's loop; a worker process routes it through its one long-lived loop instead (opening a loop
# per call there would open a Redis connection per call): see ``WorkerLink``.
_sync_runner: Callable | None = None


def route_sync_sends(runner: Callable | None) -> None:
    """Make sync sends run their coroutine with ``runner(make_coro)`` (a worker's link); None = default."""
    global _sync_runner
    _sync_runner = runner


async def _await(make_coro) -> None:
    await make_coro()


def _run_sync(make_coro) -> None:
    if _sync_runner is not None:
        _sync_runner(make_coro)
    else:
        from asgiref.sync import async_to_sync

        async_to_sync(_await)(make_coro)


def notify(user_id: int, frame: dict, person: bool = False) -> None:
    """Publish a frame from sync code where it belongs (``publish``). Never raises: the stored state is the
    truth, and a socket that missed a frame catches up from the database (its watchdog, or the next subscribe)."""
    try:
        _run_sync(lambda: publish(user_id, frame, person))
    except Exception:
        log.warning("could not publish %s of user %s", frame.get("type"), user_id, exc_info=True)


def notify_event(user_id: int, event: dict) -> None:
    """Publish a channel-layer event from sync code; never raises (as ``notify``)."""
    try:
        _run_sync(lambda: send_event_to_user(user_id, event))
    except Exception:
        log.warning("could not publish %s to user %s", event.get("type"), user_id, exc_info=True)


def broadcast_cancel_sync(message_id: int) -> None:
    """Tell every worker to stop a reply, from sync code; never raises (the stop is also stored)."""
    try:
        _run_sync(lambda: broadcast_cancel(message_id))
    except Exception:
        log.warning("could not broadcast the stop of %s", message_id, exc_info=True)
