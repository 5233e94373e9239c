"""The schema of every frame on ``/ws/chat/``, both ways: one TypedDict per frame type.

Server → browser: docs/protocol.md describes these; the consumer tests check every frame they receive with
``check_frame`` (as Zulip checks each event against its schema), so the document, the builders and the page
cannot drift. Browser → server: ``parse_client_frame`` checks a frame against its ``CLIENT_FRAMES`` schema
before any handler runs, refusing a mistyped field with the code its annotation names; what a field's value
must be beyond its type (a title's length, a parameter's bounds) the services check.
"""

import types
import typing
from enum import Enum
from typing import Annotated, Literal, NotRequired, TypedDict, Union

from django.utils.translation import gettext_lazy

from chat.errors import ChatError, ErrorCode

Status = Literal["queued", "streaming", "complete", "stopped", "failed"]
FinishReason = Literal["stop", "length", "cancelled", "error", ""]


class ConversationInfo(TypedDict):
    id: int
    title: str


class ComparisonInfo(TypedDict):
    """Compare: the message both replies answer, the two replies, whether the names stay hidden until the pick,
    and the pick (null until made)."""

    id: int
    prompt: int
    first: int
    second: int
    blind: bool
    chosen: int | None


class Source(TypedDict):
    """A piece of an attached document the reply's prompt quoted: a whole short document, or one passage."""

    n: int  # its number [n] in the prompt
    attachment: int
    name: str
    passage: int | None  # from 1; None for a whole document
    passages: int | None
    page: int | None  # a PDF's page
    whole: bool


class AttachmentInfo(TypedDict):
    """A file attached to a person's message, as its extracted text."""

    id: int
    name: str
    kind: Literal["text", "pdf", "docx"]
    size: int
    pages: int | None
    passages: int | None
    chars: int


class MessageInfo(TypedDict):
    id: int
    conversation: int
    role: Literal["user", "assistant"]
    content: str
    status: Status
    model: NotRequired[str]  # a reply's model (the served model's name)
    siblings: NotRequired[list[int]]  # the alternatives of an edited message or regenerated reply, oldest first
    created_at: NotRequired[str]  # when it was sent or asked for (ISO 8601, UTC)
    finish_reason: NotRequired[str]  # a reply's: "" until it ends; "length" when cut at its bound (Continue)
    attachments: NotRequired[list[AttachmentInfo]]  # a person's message sent with files


class Params(TypedDict):
    temperature: NotRequired[float]
    top_p: NotRequired[float]
    max_new_tokens: NotRequired[int]
    stop: NotRequired[list[str]]
    seed: NotRequired[int]


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int


class Timing(TypedDict):
    ttft_ms: int | None
    tokens_per_s: float | None


class ConversationFrame(TypedDict):
    """A conversation was created, or its title changed (renamed, or titled by the model)."""

    type: Literal["conversation"]
    conversation: ConversationInfo
    client_id: NotRequired[str]


class MessageFrame(TypedDict):
    """A stored message; with ``seq``, a reply in progress answering ``subscribe``."""

    type: Literal["message"]
    message: MessageInfo
    client_id: NotRequired[str]
    replaces: NotRequired[int]
    seq: NotRequired[int]


class SubscribedFrame(TypedDict):
    """The end of an answer to ``subscribe``; ``conversation`` null after a subscribe to none (a new chat)."""

    type: Literal["subscribed"]
    conversation: int | None
    active: int | None
    actives: list[int]  # every reply resumed, oldest first: one, or Compare's two (``active`` is the newest)


class DeltaFrame(TypedDict):
    """New reply text; seqs count from 0 per message, without gaps."""

    type: Literal["delta"]
    message: int
    seq: int
    text: str


class QueuedFrame(TypedDict):
    """A reply waits for a row of its worker's batch behind ``ahead`` others (that worker's queue only)."""

    type: Literal["queued"]
    message: int
    conversation: int
    ahead: int


class DoneFrame(TypedDict):
    """A reply ended and is stored; ``error`` says why when it failed (empty otherwise), ``error_code`` the
    stable code of that reason where one applies."""

    type: Literal["done"]
    message: int
    conversation: int
    status: Literal["complete", "stopped", "failed"]
    finish_reason: FinishReason
    content: str
    error: str
    error_code: Literal[ErrorCode.CONTEXT_LENGTH_EXCEEDED, ErrorCode.ADAPTER_UNAVAILABLE, ""]
    usage: Usage
    timing: Timing
    sources: list[Source]


class ErrorFrame(TypedDict):
    """A refused frame: a stable code and a sentence for a person."""

    type: Literal["error"]
    code: ErrorCode
    detail: str
    client_id: NotRequired[str]


class ThreadFrame(TypedDict):
    """The shown branch of a conversation changed (``switch``): reload it."""

    type: Literal["thread"]
    conversation: int


class FeedbackFrame(TypedDict):
    """The person's rating of a reply; 0 when taken back."""

    type: Literal["feedback"]
    message: int
    rating: Literal[1, -1, 0]
    comment: str


class SettingsFrame(TypedDict):
    """A conversation's settings; ``conversation`` null: the person's defaults for new conversations."""

    type: Literal["settings"]
    conversation: int | None
    system_prompt: str
    params: Params
    model: str


class ComparedFrame(TypedDict):
    """A Compare's two replies were stored (``chosen`` null), or the person picked one."""

    type: Literal["compared"]
    comparison: ComparisonInfo


class DeletedFrame(TypedDict):
    """A conversation was deleted."""

    type: Literal["deleted"]
    conversation: int


class OrganisedFrame(TypedDict):
    """Conversations were pinned, archived, moved to or out of a folder, or a folder was made, renamed or
    deleted: every tab of the person reloads its list (a few rows; the list is the truth)."""

    type: Literal["organised"]
    conversations: list[int]


class ActivityFrame(TypedDict):
    """A reply in one of the person's conversations started (queued: new, regenerated, continued) or ended. Sent
    to the person's tabs that do not show that conversation (the one showing it has its ``message`` and
    ``done``), so their lists can move it up or mark it."""

    type: Literal["activity"]
    conversation: int
    message: int
    state: Literal["started", "ended"]


FRAMES: dict[str, type] = {
    "conversation": ConversationFrame,
    "message": MessageFrame,
    "subscribed": SubscribedFrame,
    "delta": DeltaFrame,
    "queued": QueuedFrame,
    "done": DoneFrame,
    "error": ErrorFrame,
    "thread": ThreadFrame,
    "feedback": FeedbackFrame,
    "settings": SettingsFrame,
    "deleted": DeletedFrame,
    "compared": ComparedFrame,
    "organised": OrganisedFrame,
    "activity": ActivityFrame,
}


def check_frame(frame) -> None:
    """Raise ``ValueError`` unless ``frame`` matches the schema of its type exactly (no missing, extra or
    mistyped field)."""
    if not isinstance(frame, dict) or frame.get("type") not in FRAMES:
        raise ValueError(f"unknown frame: {frame!r}")
    _check(frame, FRAMES[frame["type"]], frame["type"])


def _check(value, expected, path: str) -> None:
    origin = typing.get_origin(expected)
    if isinstance(expected, type) and issubclass(expected, Enum):
        if value not in {member.value for member in expected}:
            raise ValueError(f"{path}: {value!r} is not a {expected.__name__}")
        return
    if origin in (typing.NotRequired, typing.Required):
        return _check(value, typing.get_args(expected)[0], path)
    if origin is Literal:
        if value not in typing.get_args(expected):
            raise ValueError(f"{path}: {value!r} is not one of {typing.get_args(expected)}")
        return
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(expected):
            try:
                return _check(value, option, path)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{path}: expected a list, got {value!r}")
        for i, item in enumerate(value):
            _check(item, typing.get_args(expected)[0], f"{path}[{i}]")
        return
    if expected is type(None):
        if value is not None:
            raise ValueError(f"{path}: expected null, got {value!r}")
        return
    if typing.is_typeddict(expected):
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected an object, got {value!r}")
        hints = typing.get_type_hints(expected, include_extras=True)
        missing = expected.__required_keys__ - value.keys()
        extra = value.keys() - hints.keys()
        if missing or extra:
            raise ValueError(f"{path}: missing {sorted(missing)}, unexpected {sorted(extra)}")
        for key, item in value.items():
            _check(item, hints[key], f"{path}.{key}")
        return
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if not ok:
        raise ValueError(f"{path}: expected {expected.__name__}, got {value!r}")


# --- browser → server -----------------------------------------------------------------------------------------
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
    blind: NotRequired[bool | None]
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
}


_LIST_OF_IDS = gettext_lazy("{name} must be a list of positive whole numbers.")


def _refuse(name: str, hint) -> None:
    if _bare(hint) == Ids:
        raise ChatError(ErrorCode.BAD_ID, str(_LIST_OF_IDS).format(name=name))
    code = typing.get_args(_bare(hint))[1]
    raise ChatError(code, str(_SENTENCES[code]).format(name=name, n=MAX_CLIENT_ID_CHARS))
