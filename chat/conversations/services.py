"""A person's writes in their chats: send (with Compare and its pick), regenerate, edit, switch, stop. A
conversation's settings are ``conversation_settings.py``'s; its title, deletion and place in the sidebar
``organise.py``'s; ratings ``feedback.py``'s.

Keyword-only and atomic; channel frames and tasks fire on commit, in order, so a client always sees the stored
message before any delta of its reply. No network call inside a write transaction: the admission checks run
before it (a SQLite writer holds the whole database's lock). A reply's life once queued is
``chat/replies/services.py``'s.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q as models_q
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from chat import events, tree
from chat.conversations import selectors
from chat.conversations.params import generation_params_clean
from chat.documents import selectors as document_selectors
from chat.documents import services as document_services
from chat.errors import ChatError, ErrorCode
from chat.experiments import assignment
from chat.models import Comparison, Conversation, Message
from chat.replies import admission, catalog
from chat.replies import services as reply_services
from chat.text import clean_text, title_from

log = logging.getLogger(__name__)


BUSY = gettext_lazy("A reply is still being written in this conversation; wait or press Stop.")


@dataclass
class SendResult:
    conversation: Conversation
    created: bool
    user_message: Message
    assistant_message: Message
    compared: Message | None = None  # Compare: the second model's reply, beside ``assistant_message``


def _message_text(content) -> str:
    text = clean_text(content)
    if not text.strip():
        raise ChatError(ErrorCode.EMPTY, gettext("Type a message first."))
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ChatError(
            ErrorCode.TOO_LONG,
            gettext("The message is too long: at most %(chat_max_message_chars)s characters.")
            % {"chat_max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS},
        )
    return text


def _model_of(user, conversation: Conversation) -> str:
    """The model a conversation's next reply is written by: its own, checked as the person's pick would be —
    except the candidate an A/B experiment sent it to, which the person may not pick but keeps."""
    if (
        conversation.experiment_arm == Conversation.ExperimentArm.CANDIDATE
        and conversation.experiment_id
        and conversation.model_name == conversation.experiment.candidate
        and conversation.experiment.state == conversation.experiment.State.ENDED
    ):
        # Ended (a conversation assigned while it was being ended): back to the control, as its end does.
        return conversation.experiment.control
    # Running or promoted: kept, as Continue keeps it (one rule: assignment.keeps_candidate).
    if assignment.keeps_candidate(conversation, conversation.model_name) and catalog.get(conversation.model_name):
        return conversation.model_name
    model = catalog.get(conversation.model_name) if conversation.model_name else None
    if conversation.model_name and model is None:
        raise ChatError(
            ErrorCode.MODEL_NOT_FOUND,
            gettext(
                "This conversation's model, %(model)s, is no longer served here: "
                "pick another in the conversation's header, then send again."
            )
            % {"model": assignment.shown_model(conversation)},
        )
    return catalog.resolve(user, conversation.model_name).name


def _compare_model(user, first: str, compare, shown: str = "") -> str | None:
    """Compare's second model, checked: one the person may use, not the first again — nor the name the first is
    shown under (an A/B candidate arm's: comparing it with the control must be refused there as anywhere)."""
    if not compare:
        return None
    second = catalog.resolve(user, compare).name
    if second in (first, shown):
        raise ChatError(ErrorCode.COMPARE_SAME_MODEL, gettext("Pick two different models to compare."))
    return second


def message_send(
    *,
    user,
    conversation_id: int | None,
    content,
    params=None,
    client_id: str | None = None,
    model: str | None = None,
    compare: str | None = None,
    blind: bool = False,
    attachments: list | None = None,
) -> SendResult:
    """Store the user's message and a queued reply; on commit, tell the user's sockets and queue the task.
    ``model``: a new conversation's model (else the person's default; an existing conversation keeps its own).
    ``compare``: a second model that answers the same message at once, its reply an alternative beside the
    first (``Comparison``; ``blind`` hides which model wrote which until the person picks). ``attachments``: ids
    of the person's pending attachments, linked to the message (chat/documents/)."""
    admission.require_approved(user)
    text = _message_text(content)
    clean_params = generation_params_clean(params)
    created = conversation_id is None
    if created:
        # A new conversation starts from the person's own defaults (the settings panel, with no chat open).
        defaults = selectors.chat_defaults_for(user=user)
        picked = catalog.resolve(user, model).name
        second = _compare_model(user, picked, compare)
        # A running A/B experiment may send it to its candidate instead, blind (chat/experiments/assignment.py);
        # not a Compare, which asks for two models by name.
        arm = assignment.arm_for_new_conversation(picked) if second is None else assignment.Arm(picked)
        first = arm.model
        size = admission.reply_size(
            params={**defaults["params"], **clean_params},
            system_prompt=defaults["system_prompt"],
            texts=[text],
            documents=bool(attachments),
        )
    else:
        existing = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
        first = _model_of(user, existing)
        second = _compare_model(user, first, compare, assignment.shown_model(existing))
        size = admission.reply_size(
            params={**existing.params, **clean_params}, conversation=existing, texts=[text], documents=bool(attachments)
        )
    with ExitStack() as admissions:
        admitted = admissions.enter_context(admission.admitted(user.pk, size, first))
        admitted_second = admissions.enter_context(admission.admitted(user.pk, size, second)) if second else None
        with transaction.atomic():
            admission.require_capacity(user.pk, admitted.allowance, adding=2 if second else 1)
            if created:
                conversation = Conversation.objects.create(
                    owner=user,
                    title=title_from(text),
                    model_name=first,
                    experiment=arm.experiment,
                    experiment_arm=arm.arm,
                    system_prompt=defaults["system_prompt"],
                    params=defaults["params"],
                )
            else:
                conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
                # Lock the row: two sends racing into one conversation must not both start a reply.
                conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
                if selectors.message_active_in_conversation(conversation_id=conversation.pk):
                    raise ChatError(ErrorCode.BUSY, BUSY)
            parent = None if created else selectors.message_last_current(conversation=conversation)
            user_message = Message.objects.create(
                conversation=conversation,
                parent=parent,
                role=Message.Role.USER,
                content=text,
                status=Message.Status.COMPLETE,
            )
            if attachments:
                linked = document_services.attachments_link(user=user, message=user_message, attachment_ids=attachments)
                user_message.attached = [document_selectors.attachment_payload(a) for a in linked]
            reply = reply_services.reply_create(
                conversation=conversation,
                parent=user_message,
                params={**conversation.params, **clean_params},
                reservation=admitted.reservation,
                model=first,
                shown_model=assignment.shown_model(conversation),
            )
            other = None
            if second:
                other = reply_services.reply_create(
                    conversation=conversation,
                    parent=user_message,
                    params={**conversation.params, **clean_params},
                    reservation=admitted_second.reservation,
                    model=second,
                    is_current=False,  # the first is the shown branch until the person picks
                )
                comparison = Comparison.objects.create(
                    prompt=user_message, first=reply, second=other, blind=bool(blind)
                )
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
            siblings = [reply.pk, other.pk] if other else None

            def after_commit():
                if created:
                    events.notify(user.id, events.conversation_frame(conversation, client_id))
                # A new conversation's first frames go to the person's group: no tab shows it yet (the sending
                # tab joins its group when the send returns, chat/realtime/showing.py).
                events.notify(user.id, events.message_frame(user_message, client_id), person=created)
                replies = (reply, other) if other else (reply,)
                for r in replies:
                    events.notify(user.id, events.message_frame(r, client_id, siblings=siblings), person=created)
                if other:
                    events.notify(user.id, events.compared_frame(comparison))
                for r in replies:
                    reply_services.reply_dispatch(message_id=r.id, model=r.model_name)

            transaction.on_commit(after_commit)
    return SendResult(conversation, created, user_message, reply, other)


def compare_pick(*, user, message_id) -> Comparison:
    """The person picks the better of a Compare's two replies: stored as a preference (chosen over the other),
    and the picked reply becomes the shown branch. Once: a pick is not changed afterwards (switching between
    the two stays possible, as between any alternatives)."""
    message = selectors.message_get_for_user(user=user, message_id=message_id)
    with transaction.atomic():
        comparison = (
            Comparison.objects.select_for_update()
            .filter(prompt_id=message.parent_id)
            .filter(models_q(first_id=message.pk) | models_q(second_id=message.pk))
            .first()
        )
        if comparison is None:
            raise ChatError(ErrorCode.NOT_COMPARED, gettext("That reply is not one of a comparison's two replies."))
        if comparison.chosen_id is not None:
            raise ChatError(
                ErrorCode.ALREADY_PICKED, gettext("You have already picked the better reply of this comparison.")
            )
        if (
            Message.objects.filter(pk__in=[comparison.first_id, comparison.second_id])
            .exclude(status=Message.Status.COMPLETE)
            .exists()
        ):
            raise ChatError(ErrorCode.NOT_COMPARED, gettext("Both replies must have finished before you pick one."))
        comparison.chosen_id = message.pk
        comparison.picked_at = timezone.now()
        comparison.save(update_fields=["chosen", "picked_at"])
        transaction.on_commit(lambda: events.notify(user.id, events.compared_frame(comparison)))
        if not message.is_current:  # in the same transaction: a switch refused leaves no pick behind
            message_switch(user=user, message_id=message.pk)
    return comparison


def _leave_branch(*, conversation_id: int, message_id: int) -> None:
    """Take a message and the shown messages below it off the shown branch (they stay, as an alternative)."""
    rows = tree.thread_rows(conversation_id=conversation_id)
    Message.objects.filter(pk__in=tree.current_below(rows, message_id)).update(is_current=False)


def _lock_idle_conversation(conversation_id: int) -> Conversation:
    """Lock the conversation's row; refuse when a reply is being written in it (one reply at a time)."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    if selectors.message_active_in_conversation(conversation_id=conversation.pk):
        raise ChatError(ErrorCode.BUSY, BUSY)
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
    return tree.siblings_in(tree.thread_rows(conversation_id=message.conversation_id), message.pk)


def message_regenerate(*, user, message_id, params=None, client_id: str | None = None) -> Message:
    """Write a new reply in place of any reply on the shown branch. The old reply and what followed it stay as
    an alternative (``is_current`` False); the new reply answers the same message."""
    admission.require_approved(user)
    old = selectors.message_get_for_user(user=user, message_id=message_id)
    clean_params = generation_params_clean(params)
    if old.role != Message.Role.ASSISTANT:
        raise ChatError(ErrorCode.NOT_REGENERABLE, gettext("Only an assistant reply can be regenerated."))
    size = admission.reply_size(params={**old.conversation.params, **clean_params}, conversation=old.conversation)
    model = _model_of(user, old.conversation)  # the conversation's model as it is now
    with admission.admitted(user.pk, size, model) as admitted, transaction.atomic():
        admission.require_capacity(user.pk, admitted.allowance)
        conversation = _branch_off(
            old,
            ChatError(
                ErrorCode.NOT_REGENERABLE,
                gettext("Only a reply on the branch you see can be regenerated; switch to it first."),
            ),
        )
        # The conversation's settings as they are now (the settings panel applies to the next reply), then the
        # params of this one request.
        reply = reply_services.reply_create(
            conversation=conversation,
            parent=old.parent,
            params={**conversation.params, **clean_params},
            reservation=admitted.reservation,
            model=model,
            shown_model=assignment.shown_model(conversation),
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
        siblings = _siblings(reply)

        def after_commit():
            events.notify(user.id, events.message_frame(reply, client_id, replaces=old.pk, siblings=siblings))
            reply_services.reply_dispatch(message_id=reply.id, model=reply.model_name)

        transaction.on_commit(after_commit)
    return reply


def message_edit(*, user, message_id, content, params=None, client_id: str | None = None) -> SendResult:
    """Send an edited version of one of the person's earlier messages: a new user message beside the old one
    (same parent) and a new reply to it. The old message and what followed it stay as an alternative."""
    old = selectors.message_get_for_user(user=user, message_id=message_id)
    if old.role != Message.Role.USER:
        raise ChatError(ErrorCode.NOT_EDITABLE, gettext("Only your own messages can be edited."))
    admission.require_approved(user)
    text = _message_text(content)
    clean_params = generation_params_clean(params)
    size = admission.reply_size(
        params={**old.conversation.params, **clean_params}, conversation=old.conversation, texts=[text]
    )
    model = _model_of(user, old.conversation)
    with admission.admitted(user.pk, size, model) as admitted, transaction.atomic():
        admission.require_capacity(user.pk, admitted.allowance)
        conversation = _branch_off(
            old,
            ChatError(
                ErrorCode.NOT_EDITABLE,
                gettext("Only a message on the branch you see can be edited; switch to it first."),
            ),
        )
        user_message = Message.objects.create(
            conversation=conversation,
            parent=old.parent,
            role=Message.Role.USER,
            content=text,
            status=Message.Status.COMPLETE,
        )
        reply = reply_services.reply_create(
            conversation=conversation,
            parent=user_message,
            params={**conversation.params, **clean_params},
            reservation=admitted.reservation,
            model=model,
            shown_model=assignment.shown_model(conversation),
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
        siblings = _siblings(user_message)

        def after_commit():
            events.notify(user.id, events.message_frame(user_message, client_id, replaces=old.pk, siblings=siblings))
            events.notify(user.id, events.message_frame(reply, client_id))
            reply_services.reply_dispatch(message_id=reply.id, model=reply.model_name)

        transaction.on_commit(after_commit)
    return SendResult(conversation, False, user_message, reply)


def message_switch(*, user, message_id) -> Message:
    """Show another alternative of a message: it and the newest messages below it become the shown branch, so
    the next message continues from there. Every tab of the person is told to reload the thread."""
    target = selectors.message_get_for_user(user=user, message_id=message_id)
    with transaction.atomic():
        conversation = _lock_idle_conversation(target.conversation_id)
        rows = tree.thread_rows(conversation_id=conversation.pk)
        parent = rows[target.pk]["parent_id"]
        if parent is not None and not rows[parent]["is_current"]:
            raise ChatError(
                ErrorCode.NOT_SWITCHABLE, gettext("That message is not on the branch you see; switch above it first.")
            )
        shown = [i for i in tree.siblings_in(rows, target.pk) if rows[i]["is_current"]]
        if shown != [target.pk]:
            for i in shown:
                Message.objects.filter(pk__in=tree.current_below(rows, i)).update(is_current=False)
            Message.objects.filter(pk__in=tree.newest_path_from(rows, target.pk)).update(is_current=True)
        transaction.on_commit(lambda: events.notify(user.id, events.thread_frame(conversation.pk)))
    return target


@transaction.atomic
def message_stop(*, user, message_id) -> Message:
    """The owner's Stop of one of their replies (``reply_stop``); returns the reply as it now stands."""
    message = selectors.message_get_for_user(user=user, message_id=message_id)
    if message.role != Message.Role.ASSISTANT:
        raise ChatError(ErrorCode.NOT_STOPPABLE, gettext("Only an assistant reply can be stopped."))
    reply_services.reply_stop(message=message)
    message.refresh_from_db()
    return message
