"""The frames a browser sends on ``/ws/chat/``: one TypedDict per type (``CLIENT_FRAMES``), and
``parse_client_frame``, which checks a frame against its schema before any handler runs (chat/realtime/), refusing a
mistyped field with the code its annotation names. What a field's value must be beyond its type (a title's length,
a parameter's bounds) the services check. The frames the server sends are ``chat/frames.py``'s; docs/protocol.md
describes both.
"""

import types
import typing
from typing import Annotated, Literal, NotRequired, TypedDict, Union

from django.utils.translation import gettext_lazy

from chat.errors import ChatError, ErrorCode

# A field's annotation carries the code a mistyped (or missing, where required) value is refused with.
MAX_CLIENT_ID_CHARS = 100
Id = Annotated[int, ErrorCode.BAD_ID]  # a positive 64-bit integer (an id the app issued)
ClientId = Annotated[str, ErrorCode.BAD_FRAME]  # at most MAX_CLIENT_ID_CHARS; echoed on the frames it causes
Text = Annotated[str, ErrorCode.INVALID_CONTENT]
Options = Annotated[dict, ErrorCode.INVALID_PARAMS]  # generation parameters, checked by conversations/params.py
Rating = Annotated[int, ErrorCode.INVALID_RATING]


ModelName = Annotated[str, ErrorCode.MODEL_NOT_FOUND]
Flag = Annotated[bool, ErrorCode.INVALID_VALUE]
Ids = Annotated[list, ErrorCode.BAD_ID]  # a list of Id (each checked here, the count by the service)
Name = Annotated[str, ErrorCode.INVALID_NAME]
AttachmentIds = Annotated[list, ErrorCode.BAD_ID]  # ids of the person's pending attachments (chat/documents/)


class SendIn(TypedDict):
    """A new message; no ``conversation`` (or null) starts a conversation, with ``model`` (else the person's
    default). ``compare``: a second model answers the same message at once (``blind``: names hidden until the
    pick)."""

    type: Literal["send"]
    conversation: NotRequired[Id | None]
    content: Text
    params: NotRequired[Options | None]
    client_id: NotRequired[ClientId | None]
    model: NotRequired[ModelName | None]
    compare: NotRequired[ModelName | None]
    blind: NotRequired[Flag | None]
    attachments: NotRequired[AttachmentIds | None]


class PickIn(TypedDict):
    """The better of a Compare's two replies."""

    type: Literal["pick"]
    message: Id


class StopIn(TypedDict):
    type: Literal["stop"]
    message: Id


class RegenerateIn(TypedDict):
    type: Literal["regenerate"]
    message: Id
    params: NotRequired[Options | None]
    client_id: NotRequired[ClientId | None]


class ContinueIn(TypedDict):
    type: Literal["continue"]
    message: Id
    client_id: NotRequired[ClientId | None]


class EditIn(TypedDict):
    type: Literal["edit"]
    message: Id
    content: Text
    params: NotRequired[Options | None]
    client_id: NotRequired[ClientId | None]


class SwitchIn(TypedDict):
    type: Literal["switch"]
    message: Id


class FeedbackIn(TypedDict):
    """A rating of a reply (1, -1, or 0 to take it back), with an optional comment."""

    type: Literal["feedback"]
    message: Id
    rating: Rating
    comment: NotRequired[Text | None]


class SettingsIn(TypedDict):
    """A conversation's settings; no ``conversation`` (or null): the person's defaults. A field left out
    stays as it is."""

    type: Literal["settings"]
    conversation: NotRequired[Id | None]
    system_prompt: NotRequired[Text | None]
    params: NotRequired[Options | None]
    model: NotRequired[ModelName | None]


class RenameIn(TypedDict):
    type: Literal["rename"]
    conversation: Id
    title: Text


class DeleteIn(TypedDict):
    type: Literal["delete"]
    conversation: Id


class SubscribeIn(TypedDict):
    """Show a conversation: from now on this tab receives its replies' frames (and no other conversation's).
    Answered with its reply in progress, if any (``message`` with ``seq``), then ``subscribed``. Null: show none
    (a new chat not sent yet)."""

    type: Literal["subscribe"]
    conversation: Id | None


class PinIn(TypedDict):
    """Pin a conversation on top of the list, or unpin it."""

    type: Literal["pin"]
    conversation: Id
    pinned: Flag


class ArchiveIn(TypedDict):
    """Archive conversations (out of the list, kept), or bring them back."""

    type: Literal["archive"]
    conversations: Ids
    archived: Flag


class DeleteManyIn(TypedDict):
    """Delete several conversations at once (the sidebar's select mode)."""

    type: Literal["delete_many"]
    conversations: Ids


class MoveIn(TypedDict):
    """Put a conversation in one of the person's folders; null takes it out."""

    type: Literal["move"]
    conversation: Id
    folder: Id | None


class FolderIn(TypedDict):
    """Make a folder (no ``folder``), or rename one."""

    type: Literal["folder"]
    folder: NotRequired[Id | None]
    name: Name


class FolderDeleteIn(TypedDict):
    """Delete a folder; its conversations stay, out of any folder."""

    type: Literal["folder_delete"]
    folder: Id


CLIENT_FRAMES: dict[str, type] = {
    "send": SendIn,
    "stop": StopIn,
    "regenerate": RegenerateIn,
    "continue": ContinueIn,
    "edit": EditIn,
    "switch": SwitchIn,
    "feedback": FeedbackIn,
    "settings": SettingsIn,
    "rename": RenameIn,
    "delete": DeleteIn,
    "subscribe": SubscribeIn,
    "pick": PickIn,
    "pin": PinIn,
    "archive": ArchiveIn,
    "delete_many": DeleteManyIn,
    "move": MoveIn,
    "folder": FolderIn,
    "folder_delete": FolderDeleteIn,
}


def parse_client_frame(frame: dict) -> dict:
    """The frame with only its schema's fields, each of its declared type, or a ``ChatError`` with the code of
    the first field that does not fit. ``frame`` is a
    JSON object with a string ``type`` of ``CLIENT_FRAMES`` (the consumer checks that first). Unknown fields
    are dropped, not refused: an older page may still send them."""
    schema = CLIENT_FRAMES[frame["type"]]
    hints = typing.get_type_hints(schema, include_extras=True)
    parsed = {"type": frame["type"]}
    for name, hint in hints.items():
        if name == "type":
            continue
        if name not in frame:
            if name in schema.__required_keys__:
                _refuse(name, hint)
            continue
        value = frame[name]
        if not _fits(value, hint):
            _refuse(name, hint)
        parsed[name] = value
    return parsed


def _bare(hint):
    """``hint`` without NotRequired; a union's non-null option."""
    if typing.get_origin(hint) in (typing.NotRequired, typing.Required):
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (Union, types.UnionType):
        hint = next(option for option in typing.get_args(hint) if option is not type(None))
    return hint


def _fits(value, hint) -> bool:
    if typing.get_origin(hint) in (typing.NotRequired, typing.Required):
        hint = typing.get_args(hint)[0]
    if typing.get_origin(hint) in (Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
    if hint == Ids:
        return isinstance(value, list) and all(_fits(item, Id) for item in value)
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return 0 < value < 2**63 if hint == Id else True
    if hint == ClientId:
        return isinstance(value, str) and len(value) <= MAX_CLIENT_ID_CHARS
    return isinstance(value, base)


_SENTENCES = {
    ErrorCode.BAD_ID: gettext_lazy("{name} must be a positive whole number."),
    ErrorCode.BAD_FRAME: gettext_lazy("{name} must be a string of at most {n} characters."),
    ErrorCode.INVALID_CONTENT: gettext_lazy("{name} must be text."),
    ErrorCode.INVALID_PARAMS: gettext_lazy("{name} must be an object."),
    ErrorCode.INVALID_RATING: gettext_lazy("A rating is 1 (good) or -1 (bad), or 0 to take it back."),
    ErrorCode.INVALID_VALUE: gettext_lazy("{name} must be true or false."),
    ErrorCode.INVALID_NAME: gettext_lazy("{name} must be text."),
    ErrorCode.MODEL_NOT_FOUND: gettext_lazy("{name} must be a model's name (text)."),
}


_LIST_OF_IDS = gettext_lazy("{name} must be a list of positive whole numbers.")


def _refuse(name: str, hint) -> None:
    if _bare(hint) == Ids:
        raise ChatError(ErrorCode.BAD_ID, str(_LIST_OF_IDS).format(name=name))
    code = typing.get_args(_bare(hint))[1]
    raise ChatError(code, str(_SENTENCES[code]).format(name=name, n=MAX_CLIENT_ID_CHARS))
