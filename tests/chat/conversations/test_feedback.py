"""feedback_set: a person rates finished replies in their own conversations, once each, and can change or
take back the rating; everything else is refused with a stable code and nothing stored."""

import pytest

from chat.conversations import feedback
from chat.errors import ChatError
from chat.models import Conversation, Feedback, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(make_user):
    owner = make_user("alice")
    conversation = Conversation.objects.create(owner=owner, title="t")
    question = Message.objects.create(conversation=conversation, role="user", content="hi")
    reply = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content="hello",
        status="complete",
        finish_reason="stop",
    )
    return owner, question, reply


def test_rating_a_reply_stores_one_row_that_a_second_rating_replaces(chat):
    owner, _, reply = chat
    first = feedback.feedback_set(user=owner, message_id=reply.pk, rating=1, comment="  nice\x00 ")
    assert (first.message, first.user, first.rating, first.comment) == (reply, owner, 1, "nice")
    again = feedback.feedback_set(user=owner, message_id=str(reply.pk), rating=-1, comment="")
    assert again.pk == first.pk and Feedback.objects.get().rating == -1 and Feedback.objects.get().comment == ""
    assert feedback.feedback_set(user=owner, message_id=reply.pk, rating=0) is None
    assert not Feedback.objects.exists()


def test_a_failed_or_stopped_reply_can_be_rated(chat):
    owner, _, reply = chat
    Message.objects.filter(pk=reply.pk).update(status="failed", finish_reason="error")
    assert feedback.feedback_set(user=owner, message_id=reply.pk, rating=-1, comment="it broke").rating == -1


def test_nobody_rates_another_persons_reply(chat, make_user):
    _, _, reply = chat
    with pytest.raises(ChatError) as err:
        feedback.feedback_set(user=make_user("mallory"), message_id=reply.pk, rating=-1, comment="")
    assert err.value.code == "not_found"
    assert not Feedback.objects.exists()


@pytest.mark.parametrize("rating", [2, -2, True, False, None, "1", 0.5])
def test_a_rating_is_plus_or_minus_one(chat, rating):
    owner, _, reply = chat
    with pytest.raises(ChatError) as err:
        feedback.feedback_set(user=owner, message_id=reply.pk, rating=rating, comment="")
    assert err.value.code == "invalid_rating" and err.value.detail.endswith(".")
    assert not Feedback.objects.exists()


def test_only_finished_assistant_replies_are_rated(chat):
    owner, question, reply = chat
    with pytest.raises(ChatError) as err:
        feedback.feedback_set(user=owner, message_id=question.pk, rating=1, comment="")
    assert err.value.code == "not_rateable"
    for status in Message.ACTIVE_STATUSES:
        Message.objects.filter(pk=reply.pk).update(status=status)
        with pytest.raises(ChatError) as err:
            feedback.feedback_set(user=owner, message_id=reply.pk, rating=1, comment="")
        assert err.value.code == "not_rateable"
    assert not Feedback.objects.exists()


@pytest.mark.parametrize("message_id", [None, "x", 10**30, -1])
def test_unknown_message_ids_are_not_found(chat, message_id):
    with pytest.raises(ChatError) as err:
        feedback.feedback_set(user=chat[0], message_id=message_id, rating=1, comment="")
    assert err.value.code == "not_found"


@pytest.mark.parametrize("comment,code", [(42, "invalid_content"), ("x" * 2001, "too_long")])
def test_bad_comments_are_refused(chat, comment, code):
    owner, _, reply = chat
    with pytest.raises(ChatError) as err:
        feedback.feedback_set(user=owner, message_id=reply.pk, rating=1, comment=comment)
    assert err.value.code == code
    assert not Feedback.objects.exists()


def test_the_database_itself_allows_one_rating_per_person_and_reply(chat):
    from django.db import IntegrityError, transaction

    owner, _, reply = chat
    Feedback.objects.create(message=reply, user=owner, rating=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Feedback.objects.create(message=reply, user=owner, rating=-1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Feedback.objects.filter(message=reply).update(rating=5)
