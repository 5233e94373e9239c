"""Tokens reserved at admission, settled at the end: replies admitted together cannot pass a person's day by more
than one reply's bound, every way a reply ends lets its reservation go, and the bound is what the prompt can
hold plus what the reply may write, at most the model's window (chat/replies/admission.py, chat/limits/quotas.py,
docs/fair-use.md). Counted in the real Redis."""

import datetime

import pytest
from django.utils import timezone

from chat.api import services as api_services
from chat.conversations import organise
from chat.conversations import services as conversation_services
from chat.errors import ChatError
from chat.limits import quotas
from chat.models import Message, QuotaOverride
from chat.replies import admission, liveness, sweep
from chat.replies import services as reply_services
from chat.review import services as review_services

pytestmark = pytest.mark.django_db


def send(user, content="hi", **params):
    return conversation_services.message_send(user=user, conversation_id=None, content=content, params=params)


def test_replies_admitted_together_pass_the_day_by_one_replys_bound_at_most(make_user, finish):
    """The finding: an allowance of 30 tokens, three replies sent at once (none charged yet) — each passed the
    check that the day was under 30, and the day ended far past it. Now the first holds its bound, and the
    others are refused until it ends."""
    alice = make_user("alice")
    QuotaOverride.objects.create(user=alice, tokens_per_day=30)
    first = send(alice, "tell me", max_new_tokens=20).assistant_message
    bound = quotas.tokens_held(alice.pk)
    assert bound == first_bound(first)
    for content in ("and me", "and me too"):
        with pytest.raises(ChatError) as err:
            send(alice, content, max_new_tokens=20)
        assert err.value.code == "quota_exhausted"
    assert Message.objects.filter(conversation__owner=alice, role="assistant").count() == 1  # nothing stored

    finish(first, prompt=7, completion=5)  # its end: 12 charged, the hold let go
    assert (quotas.tokens_used_today(alice.pk), quotas.tokens_held(alice.pk)) == (12, 0)
    second = send(alice, "one more", max_new_tokens=20).assistant_message  # 12 < 30: admitted
    finish(second, prompt=30, completion=20)
    assert quotas.tokens_used_today(alice.pk) == 62 <= 30 + bound  # the last may pass it, by its bound at most
    with pytest.raises(ChatError) as err:
        send(alice, "and another")
    assert err.value.code == "quota_exhausted"


def first_bound(reply) -> int:
    """What admission holds for a new conversation's first reply: the bytes of its text, the template's tokens
    for the user message and the reply, and the reply's max_new_tokens (no worker has said its window here)."""
    text = reply.parent.content.encode()
    return len(text) + 2 * admission.TEMPLATE_TOKENS_PER_MESSAGE + admission.TEMPLATE_TOKENS + 20


def test_every_end_of_a_reply_lets_its_reservation_go(make_user, finish, django_capture_on_commit_callbacks, settings):
    settings.CHAT_TOKENS_PER_DAY = 100_000
    settings.CHAT_MAX_ACTIVE_PER_USER = 10
    alice, root = make_user("alice"), make_user("root")
    root.is_staff = root.is_superuser = True
    root.save()
    ends = {}

    def held():
        return quotas.tokens_held(alice.pk)

    reply = send(alice).assistant_message
    finish(reply, 3, 4)
    ends["complete"] = held()
    with django_capture_on_commit_callbacks(execute=True):
        conversation_services.message_stop(user=alice, message_id=send(alice).assistant_message.id)
    ends["stopped while queued"] = held()
    streaming = reply_services.reply_claim(message_id=send(alice).assistant_message.id)
    with django_capture_on_commit_callbacks(execute=True):
        organise.conversation_delete(user=alice, conversation_id=streaming.conversation_id)
    ends["its chat deleted"] = held()
    with django_capture_on_commit_callbacks(execute=True):
        review_services.conversations_delete(actor=root, conversation_ids=[send(alice).conversation.pk])
    ends["deleted by staff"] = held()
    with django_capture_on_commit_callbacks(execute=True):
        review_services.reply_cancel(actor=root, message_ids=[send(alice).assistant_message.id])
    ends["cancelled by a reviewer"] = held()
    late = send(alice).assistant_message
    Message.objects.filter(pk=late.pk).update(created_at=timezone.now() - datetime.timedelta(hours=2))
    settings.CHAT_LEASE_TTL_S = 0  # the sweep trusts a Redis up this long (the suite's may have just started)
    with django_capture_on_commit_callbacks(execute=True):
        assert [m.pk for m in sweep.sweep()] == [late.pk]
    ends["swept: nobody took it in time"] = held()
    assert ends == dict.fromkeys(ends, 0)
    assert quotas.tokens_used_today(alice.pk) == 7


def test_a_refusal_after_the_reservation_lets_it_go(make_user, settings, finish):
    """Refused by the minute (after the hold is made) or inside the write transaction (a reply still being
    written in that chat), nothing is stored and nothing stays held."""
    settings.CHAT_TOKENS_PER_DAY = 100_000
    settings.CHAT_MESSAGES_PER_MINUTE = 3
    alice = make_user("alice")
    first = send(alice).assistant_message
    holding = quotas.tokens_held(alice.pk)
    with pytest.raises(ChatError) as busy:  # the same conversation: its reply is still queued
        conversation_services.message_send(user=alice, conversation_id=first.conversation_id, content="more")
    assert busy.value.code == "busy" and quotas.tokens_held(alice.pk) == holding
    finish(first)
    send(alice)  # the third of the minute: the busy send counted (the minute is hit before the transaction)
    with pytest.raises(ChatError) as minute:
        send(alice)
    assert minute.value.code == "rate_limited"
    assert quotas.tokens_held(alice.pk) == holding  # the second's only: the refused third let its hold go


def test_regenerate_edit_and_the_api_hold_a_bound_too(make_user, finish):
    alice = make_user("alice")
    QuotaOverride.objects.create(user=alice, tokens_per_day=30, max_active=5)
    sent = send(alice, "hello")
    finish(sent.assistant_message, 2, 2)
    regenerated = conversation_services.message_regenerate(user=alice, message_id=sent.assistant_message.id)
    assert regenerated.reservation and quotas.tokens_held(alice.pk) > 0
    with pytest.raises(ChatError) as err:
        conversation_services.message_edit(user=alice, message_id=sent.user_message.id, content="hello again")
    assert err.value.code == "quota_exhausted"
    key = api_services.api_key_create(owner=alice, name="laptop").key
    with pytest.raises(ChatError) as err:
        api_services.api_completion_create(key=key, turns=[{"role": "user", "content": "hi"}], params={})
    assert err.value.code == "quota_exhausted"
    finish(regenerated, 2, 2)
    reply = api_services.api_completion_create(key=key, turns=[{"role": "user", "content": "hi"}], params={})
    assert reply.reservation and quotas.tokens_held(alice.pk) > 0


def test_the_bound_counts_utf8_bytes_of_every_message_and_stops_at_the_models_window(make_user, finish, settings):
    settings.CHAT_MAX_NEW_TOKENS = 50
    alice = make_user("alice")
    sent = send(alice, "héllo wörld")  # 13 bytes: a byte-level tokenizer makes at most 13 tokens of it
    finish(sent.assistant_message, 1, 1)
    Message.objects.filter(pk=sent.assistant_message.pk).update(content="日本語")  # 9 bytes
    conversation = sent.conversation
    conversation.system_prompt = "be brief"  # 8 bytes
    size = admission.reply_size(params={}, conversation=conversation, texts=["and?"])
    per, base = admission.TEMPLATE_TOKENS_PER_MESSAGE, admission.TEMPLATE_TOKENS
    assert size == admission.ReplySize(text_bytes=13 + 9 + 8 + 4, messages=4, max_new_tokens=50)
    assert size.tokens(None) == 34 + 4 * per + base + 50
    assert size.tokens(100) == 100  # prompt and reply together never pass the model's window
    assert admission.reply_size(params={"max_new_tokens": 7}).max_new_tokens == 7

    # As a worker of the model's heartbeat says it; the stand-in worker of tests/chat/conftest.py has no window.
    liveness.heartbeat("windowed-worker", [], stats={"context_window": 100}, model=settings.CHAT_DEFAULT_MODEL)
    try:
        long = send(alice, "x" * 5000).assistant_message
    finally:
        liveness.worker_gone("windowed-worker", settings.CHAT_DEFAULT_MODEL)
    assert quotas.tokens_held(alice.pk) == 100 and long.reservation
