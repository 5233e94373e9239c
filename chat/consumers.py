"""The chat websocket: parse a frame, call a service, reply. Protocol: docs/protocol.md."""
from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import events, limits, liveness, selectors, services
from .delivery import ReplyDelivery
from .errors import ChatError
from .models import Message

log = logging.getLogger(__name__)

MAX_FRAME_CHARS = 64 * 1024
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_MANY = 4429


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One browser tab. Joins its user's group; every event of that user's conversations reaches it."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        liveness.ensure_sweeper()
        if not await database_sync_to_async(limits.socket_open)(user.pk, self.channel_name):
            await self.accept()
            await self.send_json({"type": "error", "code": "too_many_sockets",
                                  "detail": "Too many open chat tabs for this account; close one and reload."})
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.user = user
        self.group = events.user_group(user.pk)
        self.delivery = ReplyDelivery(self.send_json)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "delivery", None):
            self.delivery.close()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await database_sync_to_async(limits.socket_closed)(self.user.pk, self.channel_name)

    async def _still_signed_in(self) -> bool:
        """A logout elsewhere (or a password change) ends the session: this socket closes at its next frame."""
        session = self.scope.get("session")
        key = getattr(session, "session_key", None)
        return bool(key) and await database_sync_to_async(_session_valid)(key, self.user.pk)

    # -- frames from the browser -----------------------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if not await self._still_signed_in():
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not limits.frame_allowed(self.channel_name):
            return await self.error("rate_limited", "Too many frames at once; slow down and try again.")
        if text_data is None:
            return await self.error("bad_frame", "Frames must be JSON text, not binary.")
        if len(text_data) > MAX_FRAME_CHARS:
            return await self.error("too_large", f"The frame is too large: at most {MAX_FRAME_CHARS} characters.")
        try:
            frame = json.loads(text_data)
        except ValueError:
            return await self.error("bad_json", "The frame is not valid JSON.")
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            return await self.error("bad_frame", 'A frame must be a JSON object with a "type".')
        await self.receive_json(frame)

    async def receive_json(self, content, **kwargs):
        handler = self.HANDLERS.get(content["type"])
        if handler is None:
            return await self.error("unknown_type", f"Unknown frame type: {content['type'][:40]!r}.")
        try:
            await handler(self, content)
        except ChatError as exc:
            await self.error(exc.code, exc.detail)
        except Exception:
            log.exception("frame %s failed", content.get("type"))
            await self.error("internal", "Something went wrong on our side; the message was not processed.")

    async def on_send(self, frame):
        client_id = frame.get("client_id")
        if client_id is not None and (not isinstance(client_id, str) or len(client_id) > 100):
            raise ChatError("bad_frame", "client_id must be a string of at most 100 characters.")
        conversation = frame.get("conversation")
        if conversation is not None:
            conversation = _id(conversation, "conversation")
        result = await database_sync_to_async(services.message_send)(
            user=self.user, conversation_id=conversation, content=frame.get("content"),
            params=frame.get("params"), client_id=client_id)
        self.delivery.expect(result.assistant_message.id)

    async def on_stop(self, frame):
        await database_sync_to_async(services.message_stop)(user=self.user, message_id=_id(frame.get("message"), "message"))

    async def on_regenerate(self, frame):
        client_id = frame.get("client_id") if isinstance(frame.get("client_id"), str) else None
        reply = await database_sync_to_async(services.message_regenerate)(
            user=self.user, message_id=_id(frame.get("message"), "message"), params=frame.get("params"),
            client_id=client_id)
        self.delivery.expect(reply.id)

    async def on_subscribe(self, frame):
        conversation_id = _id(frame.get("conversation"), "conversation")
        active = await database_sync_to_async(_active_for)(self.user, conversation_id)
        if active is not None:
            await self.delivery.resume(active)
        await self.send_json({"type": "subscribed", "conversation": conversation_id,
                              "active": active.pk if active else None})

    HANDLERS = {"send": on_send, "stop": on_stop, "regenerate": on_regenerate, "subscribe": on_subscribe}

    async def error(self, code: str, detail: str):
        await self.send_json({"type": "error", "code": code, "detail": detail})

    # -- events from the channel layer (chat.events) ------------------------------------------------------
    async def chat_conversation(self, event):
        await self.send_json({"type": "conversation", "conversation": event["conversation"]})

    async def chat_message(self, event):
        frame = {"type": "message", "message": event["message"]}
        for key in ("client_id", "replaces"):
            if key in event:
                frame[key] = event[key]
        if frame["message"]["role"] == "assistant":
            self.delivery.announced(frame["message"]["id"])
        await self.send_json(frame)

    async def chat_delta(self, event):
        await self.delivery.delta(event["message"], event["seq"], event["text"])

    async def chat_done(self, event):
        await self.delivery.done(event)


def _id(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise ChatError("bad_id", f"{name} must be a positive whole number.")
    return value


def _session_valid(session_key: str, user_id: int) -> bool:
    """Read the session afresh from its store (the socket's copy is from the handshake)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.utils.crypto import constant_time_compare

    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()
    if str(data.get(SESSION_KEY)) != str(user_id):
        return False
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    return user is not None and constant_time_compare(data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash())


def _active_for(user, conversation_id: int) -> Message | None:
    conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
    return selectors.message_active_in_conversation(conversation_id=conversation.pk)
