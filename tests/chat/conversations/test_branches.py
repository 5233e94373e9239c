"""Branches, settings, titles, deletion, the sidebar's pages and exports: services and reads, row by row."""

import json

import pytest
from django.test import Client

from chat import tree
from chat.conversations import conversation_settings, exports, feedback, organise
from chat.conversations import selectors as conversation_selectors
from chat.conversations import services as conversation_services
from chat.errors import ChatError
from chat.frames import check_frame
from chat.models import ChatDefaults, Conversation, Message
from chat.replies import selectors as reply_selectors
from chat.replies import services as reply_services

pytestmark = pytest.mark.django_db


def finish(reply, text="ok"):
    reply_services.reply_finish(message_id=reply.pk, content=text, status="complete", finish_reason="stop")


def shown(conversation):
    return [(m.role, m.content) for m in conversation_selectors.messages_current(conversation=conversation)]


@pytest.fixture
def two_turns(make_user):
    """q1 → a1 → q2 → a2, all finished."""
    user = make_user()
    first = conversation_services.message_send(user=user, conversation_id=None, content="q1")
    finish(first.assistant_message, "a1")
    second = conversation_services.message_send(user=user, conversation_id=first.conversation.pk, content="q2")
    finish(second.assistant_message, "a2")
    return user, first, second


def test_edit_makes_a_sibling_and_a_new_reply_keeping_the_old_branch(two_turns):
    user, first, second = two_turns
    edited = conversation_services.message_edit(user=user, message_id=first.user_message.pk, content="q1 again")
    conversation = first.conversation
    assert edited.user_message.parent_id is None and edited.assistant_message.parent_id == edited.user_message.pk
    assert shown(conversation) == [("user", "q1 again"), ("assistant", "")]
    assert Message.objects.filter(conversation=conversation).count() == 6  # the old branch is kept
    rows = tree.thread_rows(conversation_id=conversation.pk)
    assert tree.siblings_in(rows, edited.user_message.pk) == [first.user_message.pk, edited.user_message.pk]


def test_edit_refusals(two_turns, settings):
    user, first, second = two_turns
    with pytest.raises(ChatError) as err:
        conversation_services.message_edit(user=user, message_id=first.assistant_message.pk, content="x")
    assert err.value.code == "not_editable"
    with pytest.raises(ChatError) as err:
        conversation_services.message_edit(user=user, message_id=first.user_message.pk, content="  ")
    assert err.value.code == "empty"
    conversation_services.message_edit(user=user, message_id=second.user_message.pk, content="q2b")
    with pytest.raises(ChatError) as err:  # a reply is being written
        conversation_services.message_edit(user=user, message_id=first.user_message.pk, content="q1b")
    assert err.value.code == "busy"


def test_edits_count_against_the_per_person_cap(make_user, settings):
    settings.CHAT_MAX_ACTIVE_PER_USER = 1
    user = make_user()
    a = conversation_services.message_send(user=user, conversation_id=None, content="one")
    finish(a.assistant_message)
    conversation_services.message_send(user=user, conversation_id=None, content="two")  # still queued
    with pytest.raises(ChatError) as err:
        conversation_services.message_edit(user=user, message_id=a.user_message.pk, content="one again")
    assert err.value.code == "too_many_active"
    assert Message.objects.filter(conversation=a.conversation).count() == 2


def test_an_older_reply_can_be_regenerated(two_turns):
    user, first, second = two_turns
    reply = conversation_services.message_regenerate(user=user, message_id=first.assistant_message.pk)
    assert reply.parent_id == first.user_message.pk
    assert shown(first.conversation) == [("user", "q1"), ("assistant", "")]
    finish(reply, "a1b")
    nxt = conversation_services.message_send(user=user, conversation_id=first.conversation.pk, content="q3")
    assert nxt.user_message.parent_id == reply.pk  # the next message continues from the new reply


def test_switch_shows_the_chosen_branch_and_the_next_message_continues_from_it(two_turns):
    user, first, second = two_turns
    edited = conversation_services.message_edit(user=user, message_id=first.user_message.pk, content="q1 again")
    finish(edited.assistant_message, "b1")
    conversation_services.message_switch(user=user, message_id=first.user_message.pk)
    assert shown(first.conversation) == [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]
    nxt = conversation_services.message_send(user=user, conversation_id=first.conversation.pk, content="q3")
    assert nxt.user_message.parent_id == second.assistant_message.pk
    history = reply_selectors.history_for_prompt(message=nxt.assistant_message)
    assert [t["content"] for t in history] == ["q1", "a1", "q2", "a2", "q3"]
    finish(nxt.assistant_message)
    conversation_services.message_switch(user=user, message_id=edited.user_message.pk)
    assert shown(first.conversation) == [("user", "q1 again"), ("assistant", "b1")]


def test_switch_refuses_a_message_off_the_shown_branch(two_turns):
    user, first, second = two_turns
    edited = conversation_services.message_edit(user=user, message_id=first.user_message.pk, content="q1 again")
    finish(edited.assistant_message)
    with pytest.raises(ChatError) as err:  # q2 hangs below q1, which is no longer shown
        conversation_services.message_switch(user=user, message_id=second.user_message.pk)
    assert err.value.code == "not_switchable"


def test_the_thread_read_gives_siblings_and_the_persons_rating(two_turns, django_assert_num_queries):
    user, first, second = two_turns
    feedback.feedback_set(user=user, message_id=second.assistant_message.pk, rating=-1, comment="wrong")
    with django_assert_num_queries(4):  # the tree, the branch, the ratings, the messages' attachments
        thread = conversation_selectors.thread_for_user(user=user, conversation=first.conversation)
    assert [m["siblings"] for m in thread] == [[m["id"]] for m in thread]
    assert thread[-1]["feedback"] == {"rating": -1, "comment": "wrong"}


def test_settings_apply_to_the_next_reply_and_defaults_to_new_conversations(two_turns, make_user):
    user, first, second = two_turns
    conversation_settings.conversation_settings_set(
        user=user, conversation_id=first.conversation.pk, system_prompt="Be brief.", params={"max_new_tokens": 5}
    )
    nxt = conversation_services.message_send(user=user, conversation_id=first.conversation.pk, content="q3")
    assert nxt.assistant_message.params == {"max_new_tokens": 5}
    assert reply_selectors.history_for_prompt(message=nxt.assistant_message)[0] == {
        "role": "system",
        "content": "Be brief.",
    }
    conversation_settings.conversation_settings_set(
        user=user, conversation_id=None, system_prompt="Pirate.", params={"temperature": 0.7}
    )
    assert ChatDefaults.objects.get(user=user).params == {"temperature": 0.7}
    new = conversation_services.message_send(user=user, conversation_id=None, content="hi")
    assert (new.conversation.system_prompt, new.conversation.params) == ("Pirate.", {"temperature": 0.7})
    other = conversation_services.message_send(user=make_user("bob"), conversation_id=None, content="hi")
    assert (other.conversation.system_prompt, other.conversation.params) == ("", {})
    with pytest.raises(ChatError) as err:
        conversation_settings.conversation_settings_set(
            user=user, conversation_id=None, system_prompt="", params={"top_p": 2}
        )
    assert err.value.code == "invalid_params"


@pytest.mark.parametrize("conversation", [True, False])
def test_a_seed_is_refused_in_settings_so_regenerate_never_repeats_itself(two_turns, conversation):
    """A seed in the settings would reach every later reply, Regenerate's too: the same reply again. It stays a
    per-request parameter (a send, edit or regenerate frame's params; the API's seed)."""
    user, first, second = two_turns
    target = first.conversation.pk if conversation else None
    with pytest.raises(ChatError) as err:
        conversation_settings.conversation_settings_set(
            user=user, conversation_id=target, system_prompt="", params={"temperature": 1.0, "seed": 7}
        )
    assert err.value.code == "invalid_params" and "Regenerate" in err.value.detail
    assert Conversation.objects.get(pk=first.conversation.pk).params == {}
    assert not ChatDefaults.objects.filter(user=user).exists()
    regenerated = conversation_services.message_regenerate(
        user=user, message_id=second.assistant_message.pk, params={"temperature": 1.0, "seed": 7}
    )
    assert regenerated.params == {"temperature": 1.0, "seed": 7}  # one request's seed, still honoured


def test_rename_delete_and_the_model_title_never_overwrites_a_rename(two_turns, make_user):
    user, first, second = two_turns
    conv = first.conversation
    assert organise.conversation_title_generated(conversation_id=conv.pk, title='"Greetings."', replacing="q1")
    assert Conversation.objects.get(pk=conv.pk).title == "Greetings"
    # Stopped at the title's token bound: the half word goes, an ellipsis says it runs on.
    assert organise.conversation_title_generated(
        conversation_id=conv.pk, title="The lead is Alex, and the budget is $100,0", replacing="Greetings", cut=True
    )
    assert Conversation.objects.get(pk=conv.pk).title == "The lead is Alex, and the budget is…"
    Conversation.objects.filter(pk=conv.pk).update(title="Greetings")
    organise.conversation_rename(user=user, conversation_id=conv.pk, title="  Mine  ")
    assert not organise.conversation_title_generated(conversation_id=conv.pk, title="Model", replacing="Greetings")
    assert Conversation.objects.get(pk=conv.pk).title == "Mine"
    with pytest.raises(ChatError):
        organise.conversation_rename(user=make_user("bob"), conversation_id=conv.pk, title="theirs")
    with pytest.raises(ChatError):
        organise.conversation_delete(user=make_user("carl"), conversation_id=conv.pk)
    busy = conversation_services.message_send(user=user, conversation_id=conv.pk, content="q3")
    organise.conversation_delete(user=user, conversation_id=conv.pk)
    assert not Conversation.objects.filter(pk=conv.pk).exists()
    assert not Message.objects.filter(pk=busy.assistant_message.pk).exists()


def test_sidebar_pages_by_cursor_and_searches_titles_and_text(make_user, django_assert_num_queries):
    user = make_user()
    made = []
    for n in range(7):
        r = conversation_services.message_send(user=user, conversation_id=None, content=f"topic {n}")
        finish(r.assistant_message, "the lighthouse keeper" if n == 3 else "nothing")
        made.append(r.conversation.pk)
    conversation_services.message_send(user=make_user("bob"), conversation_id=None, content="lighthouse of bob")
    seen, cursor = [], None
    while True:
        with django_assert_num_queries(1):
            page, cursor = conversation_selectors.conversation_page_for_user(user=user, after=cursor, limit=3)
        seen += [r["id"] for r in page]
        if cursor is None:
            break
    assert seen == made[::-1]
    with django_assert_num_queries(2):
        found, _ = conversation_selectors.conversation_page_for_user(user=user, query="LIGHTHOUSE")
    assert [(r["id"], r["snippet"]) for r in found] == [(made[3], "the lighthouse keeper")]


def test_json_list_and_export_endpoints(two_turns, make_user):
    user, first, second = two_turns
    client = Client()
    client.force_login(user)
    data = client.get("/conversations/?q=q2").json()
    assert [c["id"] for c in data["conversations"]] == [first.conversation.pk] and data["next"] is None
    assert client.get("/conversations/?after=nonsense").status_code == 400
    md = client.get(f"/conversations/{first.conversation.pk}/export.md")
    assert md["Content-Disposition"].startswith("attachment") and "## You\n\n```text\nq2\n```" in md.content.decode()
    doc = json.loads(client.get(f"/conversations/{first.conversation.pk}/export.json").content)
    assert [m["content"] for m in doc["messages"]] == ["q1", "a1", "q2", "a2"]
    assert client.get(f"/conversations/{first.conversation.pk}/export.xml").status_code == 404
    other = Client()
    other.force_login(make_user("bob"))
    assert other.get(f"/conversations/{first.conversation.pk}/export.json").status_code == 404


def test_the_old_api_paths_still_answer_for_one_release(two_turns, make_user):
    """A page of the previous release (a rolling upgrade) and saved export links use /api/...: the same views,
    scoped the same way."""
    user, first, _ = two_turns
    client = Client()
    client.force_login(user)
    pk = first.conversation.pk
    assert client.get("/api/conversations/").json() == client.get("/conversations/").json()
    assert client.get(f"/api/conversations/{pk}/").json() == client.get(f"/conversations/{pk}/").json()
    assert (
        client.get(f"/api/conversations/{pk}/export.md").content == client.get(f"/conversations/{pk}/export.md").content
    )
    assert client.get("/api/quota/").json() == client.get("/quota/").json()
    other = Client()
    other.force_login(make_user("bob"))
    assert other.get(f"/api/conversations/{pk}/").status_code == 404


def test_markdown_export_keeps_typed_backticks_inside_the_fence(make_user):
    user = make_user()
    r = conversation_services.message_send(user=user, conversation_id=None, content="look:\n```\ncode\n```")
    conv, messages = conversation_selectors.conversation_for_export(user=user, conversation_id=r.conversation.pk)
    assert "````text\nlook:\n```\ncode\n```\n````" in exports.as_markdown(conv, messages)


def test_new_frames_match_their_schemas():
    from chat import events

    for frame in (
        events.thread_frame(1),
        events.feedback_frame(2, -1, "no"),
        events.deleted_frame(3),
        events.settings_frame(None, "", {"temperature": 0.5, "max_new_tokens": 5}, "m"),
    ):
        check_frame(frame)
    with pytest.raises(ValueError):
        check_frame({"type": "feedback", "message": 1, "rating": 2, "comment": ""})
    with pytest.raises(ValueError):
        check_frame(
            {
                "type": "message",
                "message": {
                    "id": 1,
                    "conversation": 1,
                    "role": "user",
                    "content": "",
                    "status": "complete",
                    "siblings": ["x"],
                },
            }
        )
