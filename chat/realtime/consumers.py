"""The chat websocket: parse a frame, call a service, reply. Protocol: docs/protocol.md.

Order of work per frame matters: the frame limit is checked first, in memory, so a flood costs no database or
Redis work (Channels runs every ``database_sync_to_async`` call of a process in one thread: a flood that
reached it would stall everyone's send and stop). The session is re-read on a timer and when the user's
sessions change (logout, password change), not per frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import import_module

from asgiref.sync import sync_to_async
from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from redis.exceptions import RedisError

from chat import client_frames, events, metrics
from chat.accounts.language import language_for_scope
from chat.conversations import continuation, conversation_settings, feedback, organise, services
from chat.errors import ChatError, ErrorCode
from chat.limits import sockets
from chat.logs import bind_log_context
from chat.realtime.delivery import ReplyDelivery
from chat.realtime.layer_events import LayerEvents
from chat.realtime.showing import ShownConversation, actives_in, conversation_check, message_conversation
from chat.replies.sweep import ensure_sweeper

log = logging.getLogger(__name__)

MAX_FRAME_CHARS = 64 * 1024
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_MANY = 4429
CLOSE_UNAVAILABLE = 4503
UNAVAILABLE = gettext_lazy("The server cannot reach its queue right now; the page reconnects by itself.")


def _redis_call(fn):
    """Run a blocking Redis call off the event loop, but not in the database thread (it must not queue
    behind database work, nor hold it up)."""
    return sync_to_async(fn, thread_sensitive=False)


class ChatConsumer(LayerEvents, AsyncJsonWebsocketConsumer):
    """One browser tab. Joins its person's group (the list-level frames of all their conversations) and the group
    of the one conversation it shows (its replies' frames: chat/realtime/showing.py)."""

    user = None
    closing = False  # the server closed this socket: frames still in flight are ignored
    accepted = False  # the handshake was answered
    closed = False  # this side sent its close
    group = None
    delivery = None
    shown = None
    ticker = None

    async def __call__(self, scope, receive, send):
        # Whatever ends this socket — a close, a crash in a handler, Daphne cancelling it — its group place,
        # watchdog and socket count go with it.
        try:
            await super().__call__(scope, receive, send)
        except RedisError as exc:
            # Redis away, or a connection to it broken past the clients' retries (chat/store.py), in the
            # handshake, the channel layer's receive or a handler: the socket is refused or closed with a
            # sentence and a code the page reconnects on, never an HTTP 500 (a handshake not yet answered) or a
            # bare 1011.
            log.warning("socket closed with %s: Redis unreachable (%s)", CLOSE_UNAVAILABLE, exc)
            await self._close_unavailable()
        finally:
            await self._cleanup()

    async def accept(self, subprotocol=None, headers=None):
        await super().accept(subprotocol, headers)
        self.accepted = True

    async def close(self, code=None, reason=None):
        self.closed = True
        await super().close(code, reason)

    async def _close_unavailable(self) -> None:
        if self.closed:
            return
        try:
            if not self.accepted:
                await self.accept()
            await self.error(ErrorCode.UNAVAILABLE, UNAVAILABLE)
        except Exception:  # the client is gone already: nothing to tell
            log.debug("socket gone before its unavailable frame", exc_info=True)
        try:  # closed even if the sentence could not be sent: a socket left open never reconnects
            await self.close(code=CLOSE_UNAVAILABLE)
        except Exception:
            log.debug("socket gone before its close", exc_info=True)

    async def connect(self):
        # The page's language (its cookie, else Accept-Language) for every sentence this socket sends: set in this
        # socket's task, it holds for its frames and the database calls they make (asgiref copies the context).
        translation.activate(language_for_scope(self.scope))
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            await _redis_call(metrics.count_socket)("refused")
            return
        ensure_sweeper()
        if not await _redis_call(sockets.socket_open)(user.pk, self.channel_name):
            await self.accept()
            await self.send_json(
                events.error_frame(
                    ErrorCode.TOO_MANY_SOCKETS, _("Too many open chat tabs for this account; close one and reload.")
                )
            )
            await self.close(code=CLOSE_TOO_MANY)
            await _redis_call(metrics.count_socket)("refused")
            return
        self.user = user
        bind_log_context(user_id=user.pk)  # this socket's task: every record it logs names the person
        self.group = events.user_group(user.pk)
        self.delivery = ReplyDelivery(self.send_json)
        self.shown = ShownConversation(self.channel_layer, self.channel_name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.ticker = asyncio.ensure_future(self._tick())
        await self.accept()
        await _redis_call(metrics.count_socket)("accepted")

    async def disconnect(self, code):
        await self._cleanup()

    async def _cleanup(self) -> None:
        """Idempotent: leave the group, stop the timers, stop counting this socket."""
        if self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None
        if self.delivery is not None:
            self.delivery.close()
            self.delivery = None
        if self.group is not None:
            group, self.group = self.group, None
            try:
                await self.shown.leave()
                await self.channel_layer.group_discard(group, self.channel_name)
                await _redis_call(sockets.socket_closed)(self.user.pk, self.channel_name)
            except Exception:  # Redis away: the entries expire by themselves
                log.warning("socket cleanup failed", exc_info=True)

    async def _tick(self) -> None:
        """Every CHAT_SOCKET_REFRESH_S: still counted as open, still signed in."""
        while True:
            await asyncio.sleep(settings.CHAT_SOCKET_REFRESH_S)
            try:
                await _redis_call(sockets.socket_refresh)(self.user.pk, self.channel_name)
                await self.channel_layer.group_add(self.group, self.channel_name)  # places expire; Redis forgets
                await self.shown.renew()
                await self._check_session()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis or the database away: next round
                log.warning("socket refresh failed", exc_info=True)

    async def _check_session(self) -> None:
        """Close this socket if its session ended (logout elsewhere, password change, user deactivated)."""
        key = getattr(self.scope.get("session"), "session_key", None)
        store = import_module(settings.SESSION_ENGINE).SessionStore(key)
        user = await get_user({"session": store}) if key else None
        if user is None or not user.is_authenticated or user.pk != self.user.pk:
            await self._close_signed_out()

    async def _close_signed_out(self) -> None:
        self.closing = True
        await self.close(code=CLOSE_UNAUTHENTICATED)

    # -- frames from the browser -----------------------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if self.user is None or self.closing:  # refused or closing sockets serve nothing
            return
        if not sockets.frame_allowed(self.user.pk):
            return await self.error(ErrorCode.TOO_MANY_FRAMES, _("Too many frames at once; slow down and try again."))
        if text_data is None:
            return await self.error(ErrorCode.BAD_FRAME, _("Frames must be JSON text, not binary."))
        if len(text_data) > MAX_FRAME_CHARS:
            return await self.error(
                ErrorCode.TOO_LARGE,
                _("The frame is too large: at most %(max_frame_chars)s characters.")
                % {"max_frame_chars": MAX_FRAME_CHARS},
            )
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: deeply nested arrays under the size limit
            return await self.error(ErrorCode.BAD_JSON, _("The frame is not valid JSON."))
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            return await self.error(ErrorCode.BAD_FRAME, _('A frame must be a JSON object with a "type".'))
        await self.receive_json(frame)

    async def receive_json(self, content, **kwargs):
        handler = self.HANDLERS.get(content["type"])
        if handler is None:
            return await self.error(
                ErrorCode.UNKNOWN_TYPE, _("Unknown frame type: %(type)r.") % {"type": content["type"][:40]}
            )
        try:
            await handler(self, client_frames.parse_client_frame(content))
        except ChatError as exc:
            await self.error(exc.code, exc.detail, _client_id(content))
        except Exception:
            log.exception("frame %s failed", content.get("type"))
            await self.error(
                ErrorCode.INTERNAL,
                _("Something went wrong on our side; the message was not processed."),
                _client_id(content),
            )

    # Each takes its frame as parse_client_frame left it: the fields of its schema (chat/client_frames.py), each of
    # its declared type.
    async def _show(self, conversation_id: int | None, owned: bool = False) -> None:
        """This tab shows ``conversation_id`` from now on (``owned``: a service has just proved it the person's);
        the replies it followed elsewhere are dropped."""
        if conversation_id == self.shown.id:
            return
        if conversation_id is not None and not owned:
            await database_sync_to_async(conversation_check)(self.user, conversation_id)
        await self.shown.show(conversation_id)
        self.delivery.forget_all()

    async def _show_message(self, message_id: int) -> None:
        """Before an action on a message (stop, regenerate, continue, edit): the tab acts on what it shows, so it
        shows that message's conversation, joined before the action publishes anything. Refused (not_found) as
        the action itself would be, unless the message is the person's."""
        await self._show(await database_sync_to_async(message_conversation)(self.user, message_id), owned=True)

    async def on_send(self, frame: client_frames.SendIn):
        # Into a conversation: it is the one this tab shows, joined before the send publishes anything. A new one:
        # its first frames go to the person's group (no tab can show it yet), and this tab joins it once it exists.
        if frame.get("conversation") is not None:
            await self._show(frame["conversation"])
        result = await database_sync_to_async(services.message_send)(
            user=self.user,
            conversation_id=frame.get("conversation"),
            content=frame["content"],
            params=frame.get("params"),
            client_id=frame.get("client_id"),
            model=frame.get("model"),
            compare=frame.get("compare"),
            blind=bool(frame.get("blind")),
            attachments=frame.get("attachments"),
        )
        await self._show(result.conversation.id, owned=True)
        self.delivery.expect(result.assistant_message.id)
        if result.compared is not None:
            self.delivery.expect(result.compared.id)

    async def on_pick(self, frame: client_frames.PickIn):
        await database_sync_to_async(services.compare_pick)(user=self.user, message_id=frame["message"])

    async def on_stop(self, frame: client_frames.StopIn):
        await self._show_message(frame["message"])
        await database_sync_to_async(services.message_stop)(user=self.user, message_id=frame["message"])

    async def on_regenerate(self, frame: client_frames.RegenerateIn):
        await self._show_message(frame["message"])
        reply = await database_sync_to_async(services.message_regenerate)(
            user=self.user, message_id=frame["message"], params=frame.get("params"), client_id=frame.get("client_id")
        )
        self.delivery.expect(reply.id)

    async def on_continue(self, frame: client_frames.ContinueIn):
        await self._show_message(frame["message"])
        reply = await database_sync_to_async(continuation.message_continue)(
            user=self.user, message_id=frame["message"], client_id=frame.get("client_id")
        )
        self.delivery.restart(reply.id)

    async def on_edit(self, frame: client_frames.EditIn):
        await self._show_message(frame["message"])
        result = await database_sync_to_async(services.message_edit)(
            user=self.user,
            message_id=frame["message"],
            content=frame["content"],
            params=frame.get("params"),
            client_id=frame.get("client_id"),
        )
        self.delivery.expect(result.assistant_message.id)

    async def on_switch(self, frame: client_frames.SwitchIn):
        await database_sync_to_async(services.message_switch)(user=self.user, message_id=frame["message"])

    async def on_feedback(self, frame: client_frames.FeedbackIn):
        await database_sync_to_async(feedback.feedback_set)(
            user=self.user, message_id=frame["message"], rating=frame["rating"], comment=frame.get("comment") or ""
        )

    async def on_settings(self, frame: client_frames.SettingsIn):
        await database_sync_to_async(conversation_settings.conversation_settings_set)(
            user=self.user,
            conversation_id=frame.get("conversation"),
            system_prompt=frame.get("system_prompt"),
            params=frame.get("params"),
            model=frame.get("model"),
        )

    async def on_rename(self, frame: client_frames.RenameIn):
        await database_sync_to_async(organise.conversation_rename)(
            user=self.user, conversation_id=frame["conversation"], title=frame["title"]
        )

    async def on_delete(self, frame: client_frames.DeleteIn):
        await database_sync_to_async(organise.conversation_delete)(
            user=self.user, conversation_id=frame["conversation"]
        )

    # The sidebar's organising (chat/conversations/organise.py); each answers with ``organised`` (or ``deleted``).
    async def on_pin(self, frame: client_frames.PinIn):
        await database_sync_to_async(organise.conversation_pin)(
            user=self.user, conversation_id=frame["conversation"], pinned=frame["pinned"]
        )

    async def on_archive(self, frame: client_frames.ArchiveIn):
        await database_sync_to_async(organise.conversations_archive)(
            user=self.user, conversation_ids=frame["conversations"], archived=frame["archived"]
        )

    async def on_delete_many(self, frame: client_frames.DeleteManyIn):
        await database_sync_to_async(organise.conversations_delete)(
            user=self.user, conversation_ids=frame["conversations"]
        )

    async def on_move(self, frame: client_frames.MoveIn):
        await database_sync_to_async(organise.conversation_move)(
            user=self.user, conversation_id=frame["conversation"], folder_id=frame["folder"]
        )

    async def on_folder(self, frame: client_frames.FolderIn):
        await database_sync_to_async(organise.folder_save)(
            user=self.user, name=frame["name"], folder_id=frame.get("folder")
        )

    async def on_folder_delete(self, frame: client_frames.FolderDeleteIn):
        await database_sync_to_async(organise.folder_delete)(user=self.user, folder_id=frame["folder"])

    async def on_subscribe(self, frame: client_frames.SubscribeIn):
        conversation_id = frame["conversation"]
        await self._show(conversation_id)  # refused (not_found) unless it is the person's
        resumed = []
        actives = await database_sync_to_async(actives_in)(conversation_id) if conversation_id is not None else []
        for reply in actives:  # read after the group was joined: a reply started since reaches the socket
            if await self.delivery.resume(reply):  # False: it ended while we looked; its done was already sent
                resumed.append(reply.pk)
        await self.send_json(
            {
                "type": "subscribed",
                "conversation": conversation_id,
                "active": resumed[-1] if resumed else None,
                "actives": resumed,
            }
        )

    HANDLERS = {
        "send": on_send,
        "stop": on_stop,
        "regenerate": on_regenerate,
        "continue": on_continue,
        "subscribe": on_subscribe,
        "edit": on_edit,
        "switch": on_switch,
        "feedback": on_feedback,
        "settings": on_settings,
        "rename": on_rename,
        "delete": on_delete,
        "pick": on_pick,
        "pin": on_pin,
        "archive": on_archive,
        "delete_many": on_delete_many,
        "move": on_move,
        "folder": on_folder,
        "folder_delete": on_folder_delete,
    }

    async def error(self, code: ErrorCode, detail: str, client_id: str | None = None):
        # str(): a module's lazy sentence (UNAVAILABLE) in this socket's language; json cannot encode the proxy
        # itself, and the TypeError it raised in _close_unavailable left a socket unclosed while Redis was away.
        await self.send_json(events.error_frame(code, str(detail), client_id))

    # -- events from the channel layer: the frames in chat/realtime/layer_events.py ----------------------------
    async def chat_session_ended(self, event):
        if event.get("session") == getattr(self.scope.get("session"), "session_key", None):
            await self._close_signed_out()
        else:  # another session of the user ended, or the password changed: is this one still good?
            await self._check_session()


def _client_id(frame: dict) -> str | None:
    """The refused frame's own tag, echoed on its refusal so the page puts the text back where it was typed; a
    malformed one is left out rather than refused again."""
    value = frame.get("client_id")
    return value if isinstance(value, str) and len(value) <= client_frames.MAX_CLIENT_ID_CHARS else None
