"""Continue: a reply that ended on its length bound goes on where it was cut, as the same message.

The reply is queued again, keeping its text: a queued reply that already has text is what tells the worker
(``chat/worker/job.py``) to build the prompt it was written from followed by that text, to stream the text so
far as the first delta and the rest after it, and to add its earlier completion tokens to this run's. It stays
one message (one row, its content appended to); its ``done`` carries the whole text. Its person is charged this
run like any reply (admitted, its bound reserved, settled at the end with this run's prompt and new tokens).

Refused, each with ``not_continuable`` and a sentence: a reply that did not end on its length bound (finished,
stopped, failed, or still being written), one off the shown branch, one that something follows (a message was
sent after it: continuing would change what that message answered — regenerate or edit instead), one whose text
is not kept (an API key that keeps no text), one whose model is no longer served or that its person may no longer
use (an A/B candidate arm keeps its candidate while the experiment runs). Another reply being written in
the conversation: ``busy``. Someone else's reply: ``not_found``, as for any message.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat import events
from chat.conversations import selectors
from chat.errors import ChatError, ErrorCode
from chat.experiments import assignment
from chat.models import Conversation, Message
from chat.replies import admission, catalog
from chat.replies import services as reply_services


def _refuse(sentence: str) -> ChatError:
    return ChatError(ErrorCode.NOT_CONTINUABLE, sentence)


def _check(reply: Message) -> None:
    """Why this reply cannot be continued, as a refusal; nothing when it can."""
    if reply.role != Message.Role.ASSISTANT:
        raise _refuse(_("Only a reply can be continued."))
    if reply.is_active:
        raise _refuse(_("This reply is still being written."))
    if reply.status != Message.Status.COMPLETE or reply.finish_reason != Message.FinishReason.LENGTH:
        raise _refuse(_("Only a reply cut off at its length limit can be continued."))
    if not reply.is_current:
        raise _refuse(_("Only a reply on the branch you see can be continued; switch to it first."))
    if reply.children.exists():
        raise _refuse(
            _("Only the last reply of a conversation can be continued: regenerate it, or edit the message after it.")
        )
    if not reply.conversation.content_kept or not reply.content:
        raise _refuse(_("This reply's text was not kept, so it cannot be continued."))


def message_continue(*, user, message_id, client_id: str | None = None) -> Message:
    """Queue a reply that ended on its length bound again, to go on from its text (module docstring)."""
    admission.require_approved(user)
    reply = selectors.message_get_for_user(user=user, message_id=message_id)
    _check(reply)
    model = reply.model_name
    served = catalog.get(model)
    if served is None:
        raise _refuse(_("The model that wrote this reply is no longer served here; regenerate it instead."))
    # Checked as sending and regenerating check it: a person who lost a model (its group, an adapter's
    # permission) could otherwise go on using it by continuing one reply again and again.
    if not (catalog.may_use(user, served) or assignment.keeps_candidate(reply.conversation, model)):
        raise _refuse(_("You may no longer use the model that wrote this reply; pick another model and regenerate it."))
    size = admission.reply_size(params=reply.params, conversation=reply.conversation)
    with admission.admitted(user.pk, size, model) as admitted, transaction.atomic():
        admission.require_capacity(user.pk, admitted.allowance)
        conversation = Conversation.objects.select_for_update().get(pk=reply.conversation_id)
        if selectors.message_active_in_conversation(conversation_id=conversation.pk):
            raise ChatError(
                ErrorCode.BUSY, _("A reply is still being written in this conversation; wait or press Stop.")
            )
        reply.refresh_from_db()
        _check(reply)  # again under the lock: a second Continue, a send or a switch may have come first
        Message.objects.filter(pk=reply.pk).update(
            status=Message.Status.QUEUED,
            finish_reason="",
            stop_requested=False,
            reservation=admitted.reservation,
            worker="",
            # Queued again now: the sweep's queue timeout counts from here, not from the reply's creation.
            started_at=timezone.now(),
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
        reply.refresh_from_db()

        def after_commit():
            events.notify(user.id, events.message_frame(reply, client_id))
            reply_services.reply_dispatch(message_id=reply.id, model=reply.model_name)

        transaction.on_commit(after_commit)
    return reply
