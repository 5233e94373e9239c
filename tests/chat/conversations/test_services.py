"""Services, selectors and pages: rows stored right, refusals in words, nobody reads another's chats."""

import pytest

from chat.conversations import selectors as conversation_selectors
from chat.conversations import services as conversation_services
from chat.errors import ChatError
from chat.models import Conversation, Message
from chat.replies import selectors as reply_selectors
from chat.replies import services as reply_services
from chat.text import TITLE_CHARS

pytestmark = pytest.mark.django_db


def test_send_stores_the_user_message_and_a_queued_reply(make_user):
    user = make_user()
    result = conversation_services.message_send(
        user=user, conversation_id=None, content="Hello <b>there</b>\x00\x07!", params={"temperature": 0.5}
    )
    assert result.created and result.conversation.owner == user
    assert result.conversation.title == "Hello <b>there</b>!"
    assert result.user_message.content == "Hello <b>there</b>!"  # controls dropped, HTML kept as inert text
    reply = result.assistant_message
    assert (reply.role, reply.status, reply.parent_id, reply.params) == (
        "assistant",
        "queued",
        result.user_message.id,
        {"temperature": 0.5},
    )


def test_long_first_message_gives_a_short_title(make_user):
    result = conversation_services.message_send(user=make_user(), conversation_id=None, content="word " * 40)
    assert len(result.conversation.title) <= TITLE_CHARS and result.conversation.title.endswith("…")


@pytest.mark.parametrize(
    "content,code", [("", "empty"), ("   \n", "empty"), (42, "invalid_content"), ("x" * 20000, "too_long")]
)
def test_bad_content_is_refused_and_nothing_is_stored(make_user, content, code):
    with pytest.raises(ChatError) as err:
        conversation_services.message_send(user=make_user(), conversation_id=None, content=content)
    assert err.value.code == code and err.value.detail.endswith(".")
    assert Message.objects.count() == 0 and Conversation.objects.count() == 0


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 3},
        {"temperature": "hot"},
        {"top_p": 0},
        {"top_p": True},
        {"max_new_tokens": 10**9},
        {"max_new_tokens": 1.5},
        {"logit_bias": 1},
        [1],
        {"max_new_tokens": float("inf")},
        {"temperature": float("nan")},
        {"temperature": 10**400},
        {"top_p": -(10**400)},
        {"max_new_tokens": 10**400},
        {"seed": 1.5},
        {"seed": 2**63},
        {"seed": "7"},
    ],
)
def test_bad_params_are_refused(make_user, params):
    with pytest.raises(ChatError) as err:
        conversation_services.message_send(user=make_user(), conversation_id=None, content="hi", params=params)
    assert err.value.code == "invalid_params"


def test_one_reply_at_a_time_per_conversation(make_user):
    user = make_user()
    first = conversation_services.message_send(user=user, conversation_id=None, content="one")
    with pytest.raises(ChatError) as err:
        conversation_services.message_send(user=user, conversation_id=first.conversation.id, content="two")
    assert err.value.code == "busy"


def test_one_person_has_a_cap_on_replies_in_progress_over_all_conversations(make_user, settings):
    settings.CHAT_MAX_ACTIVE_PER_USER = 3
    alice, bob = make_user("alice"), make_user("bob")
    for n in range(3):
        conversation_services.message_send(user=alice, conversation_id=None, content=f"chat {n}")
    with pytest.raises(ChatError) as err:
        conversation_services.message_send(user=alice, conversation_id=None, content="one more")
    assert err.value.code == "too_many_active" and "3 replies" in err.value.detail
    assert Message.objects.filter(conversation__owner=alice).count() == 6  # nothing stored for the refused one
    conversation_services.message_send(user=bob, conversation_id=None, content="mine")  # the cap is per person
    first = Message.objects.filter(conversation__owner=alice, role="assistant").first()
    conversation_services.message_stop(user=alice, message_id=first.id)  # a queued reply stopped frees a place
    conversation_services.message_send(user=alice, conversation_id=None, content="now there is room")


def test_stop_of_a_streaming_reply_is_stored_for_the_worker(make_user):
    user = make_user()
    sent = conversation_services.message_send(user=user, conversation_id=None, content="hi")
    reply_services.reply_claim(message_id=sent.assistant_message.id)
    assert reply_services.reply_checkpoint(message_id=sent.assistant_message.id, content="so far")
    stopped = conversation_services.message_stop(user=user, message_id=sent.assistant_message.id)
    assert (stopped.status, stopped.stop_requested) == ("streaming", True)  # the holder ends it
    # The worker's next checkpoint is refused, telling it to stop even if the broadcast never reached it.
    assert not reply_services.reply_checkpoint(message_id=sent.assistant_message.id, content="more")
    assert Message.objects.get(pk=sent.assistant_message.id).content == "so far"


def test_another_users_conversation_and_messages_are_not_found(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    sent = conversation_services.message_send(user=alice, conversation_id=None, content="secret")
    for call in (
        lambda: conversation_services.message_send(user=bob, conversation_id=sent.conversation.id, content="hi"),
        lambda: conversation_services.message_stop(user=bob, message_id=sent.assistant_message.id),
        lambda: conversation_services.message_regenerate(user=bob, message_id=sent.assistant_message.id),
        lambda: conversation_selectors.conversation_get_for_user(user=bob, conversation_id=sent.conversation.id),
    ):
        with pytest.raises(ChatError) as err:
            call()
        assert err.value.code == "not_found"


def finish(message, text):
    return reply_services.reply_finish(message_id=message.id, content=text, status="complete", finish_reason="stop")


def test_history_follows_the_branch_and_regenerate_keeps_the_old_reply_as_an_alternative(make_user):
    user = make_user()
    first = conversation_services.message_send(user=user, conversation_id=None, content="Hi")
    Conversation.objects.filter(pk=first.conversation.pk).update(system_prompt="Be brief.")
    finish(first.assistant_message, "Hello!")
    second = conversation_services.message_send(user=user, conversation_id=first.conversation.id, content="Again")
    assert reply_selectors.history_for_prompt(message=second.assistant_message) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Again"},
    ]
    finish(second.assistant_message, "Hello again!")

    new = conversation_services.message_regenerate(user=user, message_id=second.assistant_message.id)
    assert new.parent_id == second.user_message.id and new.status == "queued"
    second.assistant_message.refresh_from_db()
    assert not second.assistant_message.is_current  # kept, as an alternative
    shown = conversation_selectors.messages_current(conversation=first.conversation)
    assert [m.id for m in shown] == [first.user_message.id, first.assistant_message.id, second.user_message.id, new.id]
    assert reply_selectors.history_for_prompt(message=new)[-1] == {"role": "user", "content": "Again"}
    with pytest.raises(ChatError) as err:
        conversation_services.message_regenerate(user=user, message_id=new.id)
    assert err.value.code == "busy"
    finish(new, "Hi again!")
    with pytest.raises(ChatError) as err:  # an alternative off the shown branch: switch to it first
        conversation_services.message_regenerate(user=user, message_id=second.assistant_message.id)
    assert err.value.code == "not_regenerable"


def test_stop_of_a_queued_reply_ends_it_and_a_finish_is_stored_once(make_user):
    user = make_user()
    sent = conversation_services.message_send(user=user, conversation_id=None, content="Hi")
    stopped = conversation_services.message_stop(user=user, message_id=sent.assistant_message.id)
    assert (stopped.status, stopped.finish_reason) == ("stopped", "cancelled")
    assert reply_services.reply_claim(message_id=sent.assistant_message.id) is None  # the worker will skip it
    assert finish(sent.assistant_message, "late") is None  # a finished reply is never overwritten
    again = conversation_services.message_stop(user=user, message_id=sent.assistant_message.id)  # a stop racing the end
    assert again.status == "stopped"


def test_pages_and_json_are_scoped_to_the_signed_in_user(client, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    sent = conversation_services.message_send(user=alice, conversation_id=None, content="<script>alert(1)</script>")
    assert client.get("/").status_code == 302  # login required
    client.force_login(alice)
    page = client.get("/")
    assert page.status_code == 200 and b"chat/page/main.js" in page.content
    assert client.get("/conversations/").json()["conversations"][0]["id"] == sent.conversation.id
    detail = client.get(f"/conversations/{sent.conversation.id}/").json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert page["X-Frame-Options"] == "DENY"
    client.force_login(bob)
    assert client.get("/conversations/").json()["conversations"] == []
    assert client.get(f"/conversations/{sent.conversation.id}/").status_code == 404


def test_signup_creates_an_account_and_signs_in(client, django_user_model):
    page = client.get("/accounts/signup/")
    assert page.status_code == 200
    response = client.post(
        "/accounts/signup/",
        {
            "username": "carol",
            "email": "carol@example.com",
            "password1": "Correct-Horse-7",
            "password2": "Correct-Horse-7",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/"
    assert django_user_model.objects.filter(username="carol").exists()
    assert client.get("/").status_code == 200
    client.logout()
    bad = client.post("/accounts/signup/", {"username": "dave", "password1": "x", "password2": "y"})
    assert bad.status_code == 200 and not django_user_model.objects.filter(username="dave").exists()
