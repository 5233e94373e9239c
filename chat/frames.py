"""The schema of every frame the server sends on ``/ws/chat/``: one TypedDict per frame type (``FRAMES``).

docs/protocol.md describes these; the consumer tests check every frame they receive with ``check_frame`` (as
Zulip checks each event against its schema), so the document, the builders and the page cannot drift. The
frames a browser sends, and their checking, are ``chat/client_frames.py``'s.
"""

import types
import typing
from enum import Enum
from typing import Literal, NotRequired, TypedDict, Union

from chat.errors import ErrorCode

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
