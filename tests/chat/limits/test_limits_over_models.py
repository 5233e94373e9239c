"""A person's limits count over every model (docs/fair-use.md, "Several models, one allowance"): one cap of
replies at once, one day's tokens, one messages-a-minute window, whichever models the replies go to; a Compare
is two replies. Counted in the real Redis, with two served models (each with a heartbeat in its live set)."""

import pytest

from chat import served
from chat.conversations import services as conversation_services
from chat.errors import ChatError
from chat.limits import quotas
from chat.models import Message, QuotaOverride
from chat.replies import liveness

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_models(settings):
    settings.CHAT_SERVED_MODELS = served.parse("first=x,second=y", "")
    settings.CHAT_DEFAULT_MODEL = settings.CHAT_MODEL = "first"
    for model in ("first", "second"):
        liveness.heartbeat("limits-test-worker", [], model=model)
    yield
    for model in ("first", "second"):
        liveness.worker_gone("limits-test-worker", model)


def send(user, model, **fields):
    return conversation_services.message_send(
        user=user, conversation_id=None, content="hi", params={"max_new_tokens": 20}, model=model, **fields
    ).assistant_message


def refused(user, model, **fields) -> str:
    with pytest.raises(ChatError) as err:
        send(user, model, **fields)
    return err.value.code


def test_the_cap_of_replies_at_once_counts_every_models_replies_and_compare_as_two(
    two_models, make_user, finish, settings
):
    settings.CHAT_MAX_ACTIVE_PER_USER = 2
    alice, bob = make_user("alice"), make_user("bob")
    first = send(alice, "first")
    send(alice, "second")
    assert refused(alice, "first") == refused(alice, "second") == "too_many_active"
    finish(first)
    assert refused(alice, "first", compare="second") == "too_many_active"  # one free place, two replies
    assert send(bob, "first", compare="second").model_name == "first"  # another person: their own cap
    assert Message.objects.filter(conversation__owner=alice, role="assistant").count() == 2


def test_one_days_tokens_and_one_minute_window_over_all_models(two_models, make_user, finish, settings):
    alice = make_user("alice")
    QuotaOverride.objects.create(user=alice, tokens_per_day=30)
    reply = send(alice, "first")  # holds its bound (more than 30) of alice's one day
    assert refused(alice, "second") == "quota_exhausted"
    finish(reply, prompt=20, completion=15)
    assert quotas.tokens_used_today(alice.pk) == 35
    assert refused(alice, "second") == "quota_exhausted"  # the day was spent on the other model

    bob = make_user("bob")
    settings.CHAT_MESSAGES_PER_MINUTE = 3
    finish(send(bob, "first"))
    send(bob, "second", compare="first")  # two replies: two of the minute's three
    assert refused(bob, "first") == refused(bob, "second") == "rate_limited"
