"""Fair use per person: messages per minute and tokens per day, counted in the real Redis, refused in words,
overridden per person by staff; one person's allowance never touches another's."""

import datetime

import pytest
from django.test import Client
from django.urls import reverse

from chat.conversations import services as conversation_services
from chat.errors import ChatError
from chat.limits import quotas
from chat.models import Message, QuotaOverride
from chat.replies import services as reply_services
from tests.helpers.support import connect, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def person(make_user):
    """A person with no messages or tokens counted yet (tests/conftest.py clears the counters per test)."""
    return make_user


def test_messages_per_minute_refuse_the_next_send_and_store_nothing(person, finish, settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 2
    alice, bob = person("alice"), person("bob")
    for n in range(2):
        finish(
            conversation_services.message_send(user=alice, conversation_id=None, content=f"hi {n}").assistant_message
        )
    with pytest.raises(ChatError) as err:
        conversation_services.message_send(user=alice, conversation_id=None, content="one more")
    assert err.value.code == "rate_limited"
    assert "2 messages in the last minute" in err.value.detail and "try again in" in err.value.detail
    assert Message.objects.filter(conversation__owner=alice).count() == 4
    conversation_services.message_send(user=bob, conversation_id=None, content="mine")  # per person
    reply = Message.objects.filter(conversation__owner=alice, role="assistant").last()
    with pytest.raises(ChatError) as err:  # a regenerate is a new reply too
        conversation_services.message_regenerate(user=alice, message_id=reply.id)
    assert err.value.code == "rate_limited"


def test_tokens_a_reply_used_are_charged_once_and_the_day_runs_out(person, finish, settings):
    settings.CHAT_TOKENS_PER_DAY = 100
    alice, bob = person("alice"), person("bob")
    reply = conversation_services.message_send(user=alice, conversation_id=None, content="hi").assistant_message
    finish(reply, prompt=30, completion=20)
    finish(reply, prompt=30, completion=20)  # a reply ends once; a second end charges nothing
    assert quotas.tokens_used_today(alice.pk) == 50
    second = conversation_services.message_send(user=alice, conversation_id=reply.conversation_id, content="more")
    finish(second.assistant_message, prompt=60, completion=10)  # admitted under the allowance, may pass it
    assert quotas.tokens_used_today(alice.pk) == 120
    with pytest.raises(ChatError) as err:
        conversation_services.message_send(user=alice, conversation_id=None, content="and more")
    assert err.value.code == "quota_exhausted"
    assert "today's 100 tokens" in err.value.detail and "starts again at 00:00 UTC" in err.value.detail
    conversation_services.message_send(user=bob, conversation_id=None, content="I still can")
    summary = quotas.summary(alice.pk)
    assert (summary["tokens_used_today"], summary["tokens_left_today"]) == (120, 0)
    assert quotas.summary(bob.pk)["tokens_left_today"] == 100


def test_a_stopped_or_failed_reply_charges_what_the_worker_counted(person):
    alice = person("alice")
    reply = conversation_services.message_send(user=alice, conversation_id=None, content="hi").assistant_message
    conversation_services.message_stop(user=alice, message_id=reply.id)  # stopped while queued: nothing was generated
    assert quotas.tokens_used_today(alice.pk) == 0


def test_staff_overrides_change_one_persons_allowance(person, finish, settings):
    settings.CHAT_TOKENS_PER_DAY = 10
    settings.CHAT_MAX_ACTIVE_PER_USER = 1
    alice, bob = person("alice"), person("bob")
    QuotaOverride.objects.create(user=alice, tokens_per_day=0, max_active=2, note="research account")
    for name in ("alice", "bob"):
        user = alice if name == "alice" else bob
        finish(
            conversation_services.message_send(user=user, conversation_id=None, content="hi").assistant_message,
            prompt=50,
        )
    conversation_services.message_send(user=alice, conversation_id=None, content="no daily limit for me")
    conversation_services.message_send(user=alice, conversation_id=None, content="and two at once")
    with pytest.raises(ChatError) as err:
        conversation_services.message_send(user=alice, conversation_id=None, content="but not three")
    assert err.value.code == "too_many_active" and "2 replies" in err.value.detail
    with pytest.raises(ChatError) as err:
        conversation_services.message_send(user=bob, conversation_id=None, content="the site's 10 tokens are gone")
    assert err.value.code == "quota_exhausted"


def test_the_day_starts_again_at_midnight_in_the_sites_time_zone(settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    reset = quotas.resets_at()
    assert (reset.hour, reset.minute, reset.tzname()) == (0, 0, "JST")
    assert datetime.timedelta(0) < reset - datetime.datetime.now(datetime.timezone.utc) <= datetime.timedelta(days=1)


@pytest.mark.django_db(transaction=True)
def test_the_refusal_reaches_the_socket_as_an_error_frame(person, settings, session_cookie):
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    cookie = session_cookie(person("alice"))

    async def go():
        ws, connected, _ = await connect(cookie)
        assert connected
        await ws.send_json_to({"type": "send", "conversation": None, "content": "first"})
        frames = [await ws.receive_json_from(5) for _ in range(3)]  # conversation, user message, reply
        await ws.send_json_to({"type": "send", "conversation": None, "content": "second"})
        error = await ws.receive_json_from(5)
        await ws.disconnect()
        return frames, error

    frames, error = run(go())
    assert [f["type"] for f in frames] == ["conversation", "message", "message"]
    assert error["type"] == "error" and error["code"] == "rate_limited" and "try again in" in error["detail"]


def test_the_chat_page_and_the_quota_endpoint_show_what_is_left(person, finish, settings):
    settings.CHAT_TOKENS_PER_DAY = 1000
    alice = person("alice")
    finish(
        conversation_services.message_send(user=alice, conversation_id=None, content="hi").assistant_message,
        prompt=100,
        completion=23,
    )
    web = Client()
    web.force_login(alice)
    assert "877</span> of 1,000 tokens left today" in web.get(reverse("chat:index")).content.decode()
    body = web.get(reverse("chat:quota")).json()
    assert (body["tokens_per_day"], body["tokens_used_today"], body["tokens_left_today"]) == (1000, 123, 877)
    assert Client().get(reverse("chat:quota")).status_code == 302  # people only see their own, signed in


def test_staff_see_todays_use_in_the_admin_list(person, finish, django_user_model):
    alice = person("alice")
    QuotaOverride.objects.create(user=alice, tokens_per_day=5000)
    finish(
        conversation_services.message_send(user=alice, conversation_id=None, content="hi").assistant_message,
        prompt=1200,
        completion=34,
    )
    root = django_user_model.objects.create_superuser(username="root", password="a-long-test-password")
    web = Client()
    web.force_login(root)
    page = web.get(reverse("admin:chat_quotaoverride_changelist")).content.decode()
    assert "1,234" in page and "alice" in page


@pytest.mark.django_db(transaction=True)
def test_one_person_refused_both_ways_while_another_is_accepted_and_answered(make_user, settings, session_cookie):
    """Over two sockets on the real channel layer: alice meets rate_limited, then quota_exhausted, while bob's
    sends in the same minute are accepted and answered (the worker's part: reply_claim, then reply_finish,
    which charges the tokens and sends done)."""
    from channels.db import database_sync_to_async

    settings.CHAT_MESSAGES_PER_MINUTE = 2
    settings.CHAT_TOKENS_PER_DAY = 300
    # Each reply holds a bound of its cost until it ends (its text's bytes, the template's tokens and at most
    # this many new tokens: ~100): alice's second reply, queued, leaves room for her third, refused by the minute.
    settings.CHAT_MAX_NEW_TOKENS = 16
    alice, bob = make_user("alice"), make_user("bob")
    cookies = session_cookie(alice), session_cookie(bob)

    @database_sync_to_async
    def answer(reply_id, prompt, completion):
        reply_services.reply_claim(message_id=reply_id)
        reply_services.reply_finish(
            message_id=reply_id,
            content="ok",
            status=Message.Status.COMPLETE,
            finish_reason=Message.FinishReason.STOP,
            prompt_tokens=prompt,
            completion_tokens=completion,
        )

    async def send(ws, content):
        """A send's first answer: the reply it stored (after its conversation and user message), or the error."""
        await ws.send_json_to({"type": "send", "conversation": None, "content": content})
        first = await ws.receive_json_from(5)
        if first["type"] == "error":
            return first
        await ws.receive_json_from(5)  # the user message
        return await ws.receive_json_from(5)  # the reply, queued

    async def until_done(ws):
        while (frame := await ws.receive_json_from(5))["type"] != "done":
            pass
        return frame

    async def go():
        (alices, ok_a, _), (bobs, ok_b, _) = await connect(cookies[0]), await connect(cookies[1])
        assert ok_a and ok_b
        got = {}
        first = await send(alices, "one")
        await answer(first["message"]["id"], 10, 10)
        await until_done(alices)
        await send(alices, "two")  # alice's second this minute, queued
        got["rate"] = await send(alices, "three")
        bob_reply = await send(bobs, "mine")  # the same minute: bob has his own
        assert bob_reply["type"] == "message", bob_reply
        await answer(bob_reply["message"]["id"], 5, 5)
        got["bob_done"] = await until_done(bobs)
        second = await database_sync_to_async(
            lambda: Message.objects.filter(conversation__owner=alice, role="assistant").latest("id").id
        )()
        await answer(second, 160, 140)  # alice's day: 320 of 300 tokens
        await until_done(alices)
        got["quota"] = await send(alices, "four")
        bob_again = await send(bobs, "and again")
        assert bob_again["type"] == "message", bob_again
        await answer(bob_again["message"]["id"], 5, 5)
        got["bob_again_done"] = await until_done(bobs)
        await alices.disconnect()
        await bobs.disconnect()
        return got

    got = run(go(), timeout=60)
    assert got["rate"]["type"] == "error" and got["rate"]["code"] == "rate_limited"
    assert got["quota"]["type"] == "error" and got["quota"]["code"] == "quota_exhausted"
    assert "starts again at" in got["quota"]["detail"]
    for done in (got["bob_done"], got["bob_again_done"]):
        assert done["status"] == "complete" and done["content"] == "ok"
    assert Message.objects.filter(conversation__owner=alice).count() == 4  # the refused sends stored nothing
    assert Message.objects.filter(conversation__owner=bob, role="assistant", status="complete").count() == 2
    assert (quotas.tokens_used_today(alice.pk), quotas.tokens_used_today(bob.pk)) == (320, 20)


def test_an_override_staff_add_or_change_in_the_admin_form_applies_to_the_next_send(
    person, settings, django_user_model
):
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    alice = person("alice")
    root = django_user_model.objects.create_superuser(username="root", password="a-long-test-password")
    staff = Client()
    staff.force_login(root)
    conversation_services.message_send(user=alice, conversation_id=None, content="one")
    with pytest.raises(ChatError) as err:
        conversation_services.message_send(user=alice, conversation_id=None, content="two")
    assert err.value.code == "rate_limited"

    form = {"user": alice.pk, "messages_per_minute": "3", "tokens_per_day": "", "max_active": "", "note": "demo"}
    added = staff.post(reverse("admin:chat_quotaoverride_add"), form)
    assert added.status_code == 302, added.content.decode()[:2000]
    conversation_services.message_send(user=alice, conversation_id=None, content="two, allowed now")  # 3 a minute

    row = QuotaOverride.objects.get(user=alice)
    changed = staff.post(reverse("admin:chat_quotaoverride_change", args=[row.pk]), {**form, "max_active": "2"})
    assert changed.status_code == 302, changed.content.decode()[:2000]
    with pytest.raises(ChatError) as err:  # two replies of hers are queued: the new cap of 2 is reached
        conversation_services.message_send(user=alice, conversation_id=None, content="three")
    assert err.value.code == "too_many_active" and "2 replies" in err.value.detail
