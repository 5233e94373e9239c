"""Who may start a new reply now, checked before (and, for the cap, inside) the write transaction that stores
it: the person's approval, replies at once, today's tokens, a live worker, messages per minute. Every path
that starts a reply — send, regenerate, edit, the API — goes through ``admitted`` (``admit``, holding a bound of
the reply's cost from the person's day until the reply ends) then ``require_capacity``. A reply is admitted for
its model: a live worker of that model, its window.

The bound (``ReplySize``) is made where no tokenizer is: the web side counts the UTF-8 bytes of every text the
prompt may hold — a byte-level tokenizer (GPT-2's, Llama 3's, SmolLM's, Qwen's) never makes more tokens than
bytes — plus the chat template's tokens around them and the most tokens the reply may write, and caps it at the
model's context window (prompt and reply together never pass it), which the workers publish with their
heartbeat. docs/fair-use.md says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from chat.accounts import selectors as account_selectors
from chat.errors import ChatError, ErrorCode
from chat.limits import quotas
from chat.models import Attachment, lock_person
from chat.replies import catalog, liveness
from chat.replies import selectors as reply_selectors


def require_worker(model: str) -> int | None:
    """Refuse a new reply when no worker of its model could write it: better a clear answer now than a silent
    queue. Returns the largest context window that model's live workers read (None when they have not said)."""
    from redis.exceptions import RedisError

    try:
        alive = liveness.workers_alive(model)
        window = liveness.context_window(alive)
    except RedisError:
        raise ChatError(
            ErrorCode.UNAVAILABLE, _("The server cannot reach its queue right now; try again in a moment.")
        ) from None
    if not alive:
        raise ChatError(
            ErrorCode.NO_WORKER,
            _(
                "No worker is running the model %(model)s right now, so nobody can "
                "answer. Nothing was stored; try again in a minute, or pick another model."
            )
            % {"model": model},
        )
    return window


def require_approved(user) -> None:
    """People whose account awaits staff approval (``CHAT_SIGNUP=approval``) may look around but not chat."""
    if not account_selectors.account_may_chat(user=user):
        raise ChatError(ErrorCode.NOT_APPROVED, account_selectors.NOT_APPROVED)


def too_many_active(cap: int) -> ChatError:
    return ChatError(
        ErrorCode.TOO_MANY_ACTIVE,
        ngettext(
            "You already have %(cap)s reply being written; wait for it to finish or press Stop, then send again.",
            "You already have %(cap)s replies being written; wait for one to finish or press Stop, then send again.",
            cap,
        )
        % {"cap": cap},
    )


# Tokens a chat template may add around the texts: per message (role markers, end of turn) and once (the
# start, the reply's opening, a system prompt the template writes itself when there is none). Generous for the
# ChatML, Llama 3 and Gemma templates and for the plain format.
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS = 64


@dataclass(frozen=True)
class ReplySize:
    """What bounds a reply's cost before its prompt is built: the UTF-8 bytes of every text its prompt may hold,
    how many messages they are, and the most tokens the reply may write."""

    text_bytes: int
    messages: int
    max_new_tokens: int

    def tokens(self, window: int | None) -> int:
        """The bound in tokens: prompt (bytes and the template's tokens) and reply, at most the model's window."""
        total = self.text_bytes + TEMPLATE_TOKENS_PER_MESSAGE * self.messages + TEMPLATE_TOKENS + self.max_new_tokens
        return min(total, window) if window else total


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def reply_size(
    *, params: dict, conversation=None, system_prompt: str = "", texts: Iterable[str] = (), documents: bool = False
) -> ReplySize:
    """The bound of a new reply: in ``conversation`` (every message of it, every branch, and its system prompt),
    or a new one with ``system_prompt``; ``texts``: the messages that come with the reply (a send's, an edit's,
    an API request's turns); ``params``: the reply's own (its ``max_new_tokens``, else the site's cap).
    ``documents``: files come with it; a conversation with attached documents counts them too (their block in
    the prompt: at most CHAT_ATTACHMENT_PROMPT_CHARS characters, 4 bytes each at most, and its labels)."""
    size, messages = (0, 0)
    if conversation is not None:
        size, messages = reply_selectors.conversation_text_size(conversation_id=conversation.pk)
        system_prompt = conversation.system_prompt
        documents = documents or Attachment.objects.filter(conversation_id=conversation.pk).exists()
    if documents:
        size += 4 * settings.CHAT_ATTACHMENT_PROMPT_CHARS + DOCUMENT_LABEL_BYTES
    texts = list(texts)
    cap = settings.CHAT_MAX_NEW_TOKENS
    asked = params.get("max_new_tokens")
    return ReplySize(
        text_bytes=size + _utf8(system_prompt) + sum(_utf8(t) for t in texts),
        messages=messages + len(texts) + 1,
        max_new_tokens=min(int(asked), cap) if asked else cap,
    )


# The documents block's header and each piece's label (chat/documents/prompt.py), generously.
DOCUMENT_LABEL_BYTES = 2000


@dataclass(frozen=True)
class Admission:
    """A reply allowed to start: the person's allowance and the reservation holding its bound ("" when none)."""

    user_id: int
    allowance: quotas.Allowance
    reservation: str

    def release(self) -> None:
        """The reply was not stored after all: let its reservation go."""
        if self.reservation:
            quotas.tokens_settle(self.user_id, self.reservation, 0)


def admit(user_id: int, size: ReplySize, model: str) -> Admission:
    """Everything checked before a new reply's write transaction, cheapest first, none of it holding a lock:
    the cap on replies at once (a read: a person at the cap who keeps sending costs one read, not a write
    transaction, which on SQLite locks the whole database), today's tokens (a read), a live worker, then the
    reply's bound held from the person's day (``quotas.tokens_reserve``: atomic, counting what their other
    replies hold), and last the person's messages per minute (last, so a send refused for another reason does
    not use up the minute; refused there, the reservation goes)."""
    allowance = quotas.allowance_for(user_id)
    if reply_selectors.replies_active_for_user(user_id=user_id) >= allowance.max_active:
        raise too_many_active(allowance.max_active)
    quotas.require_tokens_left(user_id, allowance)
    window = require_worker(catalog.worker_model(model))  # an adapter's replies are its base model's workers'

    admission = Admission(user_id, allowance, quotas.tokens_reserve(user_id, allowance, size.tokens(window)))
    try:
        quotas.message_hit(user_id, allowance)
    except BaseException:
        admission.release()
        raise
    return admission


@contextmanager
def admitted(user_id: int, size: ReplySize, model: str) -> Iterator[Admission]:
    """``admit``, for a ``with`` around the write transaction that stores the reply: when that raises (a refusal
    inside it, a rollback), the reservation goes; once the reply is stored, it keeps it
    (``Message.reservation``) and its end settles it."""
    admission = admit(user_id, size, model)
    try:
        yield admission
    except BaseException:
        admission.release()
        raise


def require_capacity(user_id: int, allowance: quotas.Allowance, adding: int = 1) -> None:
    """At most ``allowance.max_active`` replies of one person queued or streaming at once, over all their
    conversations and sockets, so one person cannot fill the queue everyone shares. The person's row is locked
    first, so concurrent sends of one person are counted one after another."""
    lock_person(user_id)
    # ``adding``: the replies about to be stored (Compare stores two).
    if reply_selectors.replies_active_for_user(user_id=user_id) + adding > allowance.max_active:
        raise too_many_active(allowance.max_active)
