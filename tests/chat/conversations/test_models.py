"""A conversation's model, switching it, and Compare (chat/conversations/services.py) over the real database and
Redis: the model each reply is queued for, the refusals, the comparison and its pick."""

import json

import pytest

from chat import names, served
from chat.conversations import conversation_settings, selectors
from chat.conversations import services as conversation_services
from chat.errors import ChatError, ErrorCode
from chat.models import Comparison, Conversation, Message
from chat.replies import liveness
from chat.store import client

pytestmark = pytest.mark.django_db

DEFAULT = "bundled:smollm2-135m-instruct"


@pytest.fixture
def two_models(settings):
    """The default model and "other", each with a stand-in worker (only the default's comes from conftest)."""
    settings.CHAT_SERVED_MODELS = served.parse(f"{DEFAULT}={DEFAULT},other=/models/other", "")
    settings.CHAT_DEFAULT_MODEL = DEFAULT
    liveness.heartbeat("stand-in-other", [], model="other")
    client().delete(names.model_queue(DEFAULT), names.model_queue("other"))
    yield
    liveness.worker_gone("stand-in-other", "other")
    client().delete(names.model_queue(DEFAULT), names.model_queue("other"))


def queued_on(model: str) -> list[int]:
    """The reply ids waiting on a model's queue, read from the broker's own list."""
    return [
        json.loads(json.loads(t)["headers"]["argsrepr"])[0] for t in client().lrange(names.model_queue(model), 0, -1)
    ]


def finish(reply, text="done"):
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE, content=text)


def test_a_new_conversation_takes_the_picked_model_and_its_reply_goes_to_that_models_queue(
    two_models, make_user, django_capture_on_commit_callbacks
):
    alice = make_user()
    with django_capture_on_commit_callbacks(execute=True):
        picked = conversation_services.message_send(user=alice, conversation_id=None, content="Hi", model="other")
        default = conversation_services.message_send(user=alice, conversation_id=None, content="Hi")
    assert (picked.conversation.model_name, picked.assistant_message.model_name) == ("other", "other")
    assert default.conversation.model_name == DEFAULT
    assert queued_on("other") == [picked.assistant_message.pk] and queued_on(DEFAULT) == [default.assistant_message.pk]


def test_switching_a_conversations_model_applies_from_its_next_reply(
    two_models, make_user, django_capture_on_commit_callbacks
):
    alice = make_user()
    with django_capture_on_commit_callbacks(execute=True):
        first = conversation_services.message_send(user=alice, conversation_id=None, content="Hi")
    finish(first.assistant_message)
    stored = conversation_settings.conversation_settings_set(
        user=alice, conversation_id=first.conversation.pk, system_prompt="", params={}, model="other"
    )
    assert stored["model"] == "other"
    with django_capture_on_commit_callbacks(execute=True):
        second = conversation_services.message_send(user=alice, conversation_id=first.conversation.pk, content="And?")
    assert Message.objects.get(pk=first.assistant_message.pk).model_name == DEFAULT  # what was written stays
    assert second.assistant_message.model_name == "other" and queued_on("other") == [second.assistant_message.pk]
    finish(second.assistant_message)
    regenerated = conversation_services.message_regenerate(user=alice, message_id=first.assistant_message.pk)
    assert regenerated.model_name == "other"
    # The person's default for new conversations, from the settings panel with no chat open.
    conversation_settings.conversation_settings_set(
        user=alice, conversation_id=None, system_prompt="", params={}, model="other"
    )
    assert conversation_services.message_send(
        user=alice, conversation_id=None, content="x"
    ).conversation.model_name == ("other")


def test_a_model_without_a_worker_is_refused_by_name_and_nothing_is_stored(two_models, make_user):
    alice = make_user()
    liveness.worker_gone("stand-in-other", "other")
    with pytest.raises(ChatError) as refused:
        conversation_services.message_send(user=alice, conversation_id=None, content="Hi", model="other")
    assert refused.value.code == ErrorCode.NO_WORKER and "other" in refused.value.detail
    with pytest.raises(ChatError) as unknown:
        conversation_services.message_send(user=alice, conversation_id=None, content="Hi", model="gpt-9")
    assert unknown.value.code == ErrorCode.MODEL_NOT_FOUND and DEFAULT in unknown.value.detail
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_compare_queues_one_reply_per_model_as_alternatives_and_a_pick_is_a_preference(
    two_models, make_user, django_capture_on_commit_callbacks
):
    alice = make_user()
    with django_capture_on_commit_callbacks(execute=True):
        sent = conversation_services.message_send(
            user=alice, conversation_id=None, content="Which is better?", compare="other", blind=True
        )
    first, second = sent.assistant_message, sent.compared
    assert (first.parent_id, second.parent_id) == (sent.user_message.pk, sent.user_message.pk)
    assert (first.model_name, second.model_name) == (DEFAULT, "other")
    assert (first.is_current, second.is_current) == (True, False)
    assert queued_on(DEFAULT) == [first.pk] and queued_on("other") == [second.pk]
    comparison = Comparison.objects.get(prompt=sent.user_message)
    assert (comparison.first_id, comparison.second_id, comparison.blind, comparison.chosen_id) == (
        first.pk,
        second.pk,
        True,
        None,
    )

    with pytest.raises(ChatError) as early:
        conversation_services.compare_pick(user=alice, message_id=second.pk)
    assert early.value.code == ErrorCode.NOT_COMPARED  # both must have finished
    finish(first, "one")
    finish(second, "two")
    with pytest.raises(ChatError) as not_one:
        conversation_services.compare_pick(user=alice, message_id=sent.user_message.pk)
    assert not_one.value.code == ErrorCode.NOT_COMPARED
    bob = make_user("bob")
    with pytest.raises(ChatError) as others:
        conversation_services.compare_pick(user=bob, message_id=second.pk)
    assert others.value.code == ErrorCode.NOT_FOUND

    picked = conversation_services.compare_pick(user=alice, message_id=second.pk)
    assert (picked.chosen_id, picked.rejected_id()) == (second.pk, first.pk) and picked.picked_at
    assert Message.objects.get(pk=second.pk).is_current and not Message.objects.get(pk=first.pk).is_current
    with pytest.raises(ChatError) as again:
        conversation_services.compare_pick(user=alice, message_id=first.pk)
    assert again.value.code == ErrorCode.ALREADY_PICKED

    thread = selectors.thread_for_user(user=alice, conversation=sent.conversation)
    asked = thread[0]["comparison"]
    assert asked["chosen"] == second.pk and [r["model"] for r in asked["replies"]] == [DEFAULT, "other"]
    assert [r["content"] for r in asked["replies"]] == ["one", "two"] and thread[1]["model"] == "other"


def test_compare_needs_two_models_and_room_for_two_replies(two_models, make_user, settings):
    alice = make_user()
    with pytest.raises(ChatError) as same:
        conversation_services.message_send(user=alice, conversation_id=None, content="Hi", compare=DEFAULT)
    assert same.value.code == ErrorCode.COMPARE_SAME_MODEL
    settings.CHAT_MAX_ACTIVE_PER_USER = 1
    with pytest.raises(ChatError) as full:
        conversation_services.message_send(user=alice, conversation_id=None, content="Hi", compare="other")
    assert full.value.code == ErrorCode.TOO_MANY_ACTIVE and not Message.objects.exists()
