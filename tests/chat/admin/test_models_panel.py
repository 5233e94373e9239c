"""The review panel by model: the conversation list filters by a conversation's model and by the model of any of
its replies, the message list by the reply's own model (a Compare reply's differs from its conversation's), the
filters' choices never read the message table, the transcript shows each reply's model and worker and marks a
Compare, its pick and whether it was blind, and the list export takes the model filters as it takes the others."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat.models import AuditEvent, Message
from chat.review import selectors
from tests.chat.admin.test_access import row_of
from tests.chat.admin.test_queries import queries
from tests.chat.review.conftest import BIG, SMALL, answered, compared, two_models  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db

CONVERSATIONS = reverse("admin:chat_conversation_changelist")
MESSAGES = reverse("admin:chat_message_changelist")
NAMES_SQL = 'SELECT DISTINCT "chat_conversation"."model_name"'  # selectors.model_names (SQLite and PostgreSQL)


@pytest.fixture
def chats(people, two_models):  # noqa: F811
    """``plain``: big alone; ``compared``: big, its message also answered by small (picked); ``small``: a
    conversation of small's."""
    plain = answered(people.owner, "plain question", "plain answer").conversation
    comparison = compared(people.owner, "compared question", ("big's answer", "small's answer"), pick=1)
    small = answered(people.owner, "small question", "small answer", model=SMALL).conversation
    return type("Chats", (), dict(plain=plain, compared=comparison.prompt.conversation, small=small, c=comparison))


def listed(client, url, query) -> set[int]:
    response = client.get(url + "?" + query)
    assert response.status_code == 200, query
    return {row.pk for row in response.context["cl"].result_list}


@pytest.mark.parametrize(
    "query,expected",
    [
        (f"model_name={BIG}", {"plain", "compared"}),  # the conversation's model
        (f"model_name={SMALL}", {"small"}),
        (f"reply_model={SMALL}", {"compared", "small"}),  # any reply by it: the Compare's second model too
        (f"reply_model={BIG}", {"plain", "compared"}),
        (f"reply_model={SMALL}&model_name={BIG}", {"compared"}),
        ("reply_model=gone-model", set()),  # a name nobody serves or used: applied, not ignored
    ],
)
def test_the_conversation_list_filters_by_its_model_and_by_a_replys(people, client_for, chats, query, expected):
    ids = {name: getattr(chats, name).pk for name in ("plain", "compared", "small")}
    assert listed(client_for(people.reviewer), CONVERSATIONS, query) == {ids[name] for name in expected}


def test_the_conversation_list_filters_by_a_gold_answer(people, client_for, chats):
    """``?gold=yes``: conversations a training run could learn from (a reviewer's gold answer on one of their
    replies, whichever branch); ``no``: the rest."""
    from chat.review import services as review_services

    reply = Message.objects.get(content="small's answer")  # the Compare's second reply: not the shown one first
    review_services.gold_answer_set(reviewer=people.reviewer, message_id=reply.pk, content="a better answer")
    client = client_for(people.reviewer)
    assert listed(client, CONVERSATIONS, "gold=yes") == {chats.compared.pk}
    assert listed(client, CONVERSATIONS, "gold=no") == {chats.plain.pk, chats.small.pk}
    assert "a gold answer" in client.get(CONVERSATIONS).content.decode()


def test_the_message_list_filters_by_the_replys_own_model(people, client_for, chats):
    client = client_for(people.reviewer)
    small = set(Message.objects.filter(role="assistant", model_name=SMALL).values_list("pk", flat=True))
    assert small == {chats.c.second_id, Message.objects.get(content="small answer").pk}
    assert listed(client, MESSAGES, f"model_name={SMALL}") == small
    page = client.get(MESSAGES + f"?model_name={SMALL}").content.decode()
    assert f"{SMALL}-worker-1" in page  # the worker column


def test_the_model_choices_are_the_conversations_and_the_served_models_without_reading_messages(people, chats):
    Message.objects.filter(pk=chats.c.second_id).update(model_name="retired")  # a reply's name alone: not listed
    with CaptureQueriesContext(connection) as captured:
        names = selectors.model_names()
    assert names == [BIG, SMALL]
    assert len(captured) == 1 and "chat_message" not in captured[0]["sql"]


def test_the_two_model_filters_of_the_conversation_list_read_the_names_once(people, client_for, chats):
    client = client_for(people.reviewer)
    for query in ("", f"?reply_model={SMALL}&model_name={BIG}"):
        with CaptureQueriesContext(connection) as captured:
            page = client.get(CONVERSATIONS + query)
        names_read = [q["sql"] for q in captured if q["sql"].startswith(NAMES_SQL)]
        assert len(names_read) == 1, names_read
    page = client.get(CONVERSATIONS).content.decode()
    assert f'?reply_model={SMALL}"' in page and f'?model_name={SMALL}"' in page  # each lists the choices


def test_the_transcript_shows_each_replys_model_and_worker_and_marks_the_compare_and_its_pick(
    people, client_for, chats
):
    c = chats.c
    page = client_for(people.reviewer).get(reverse("admin:chat_conversation_change", args=[chats.compared.pk]))
    page = page.content.decode()
    asked, first, second = row_of(page, c.prompt_id), row_of(page, c.first_id), row_of(page, c.second_id)
    assert f"model {BIG}" in first and f"worker {BIG}-worker-1" in first
    assert f"model {SMALL}" in second and f"worker {SMALL}-worker-1" in second
    assert "<strong>Compare</strong>: two models answered" in asked
    assert f'href="#m{c.first_id}"' in asked and f'href="#m{c.second_id}"' in asked
    assert f'the person picked <a href="#m{c.second_id}">' in asked
    assert f'beside <a href="#m{c.first_id}">' in second and "compare-picked" in second
    assert f'beside <a href="#m{c.second_id}">' in first and "not picked" in first
    assert "alternative" in first  # the pick made the small reply the shown one
    assert "blind" not in asked + first + second


def test_a_blind_compare_not_picked_yet_says_so(people, client_for, two_models):  # noqa: F811
    c = compared(people.owner, "which?", ("one", "two"), blind=True)
    page = client_for(people.reviewer).get(reverse("admin:chat_conversation_change", args=[c.prompt.conversation_id]))
    page = page.content.decode()
    for row in (row_of(page, c.prompt_id), row_of(page, c.first_id), row_of(page, c.second_id)):
        assert "no pick yet" in row and "blind: the names were hidden until the pick" in row


def test_a_transcript_with_compares_costs_what_one_without_does(people, client_for, two_models):  # noqa: F811
    client = client_for(people.reviewer)
    plain = answered(people.owner, "q", "a")
    for n in range(3):
        answered(people.owner, f"q{n}", f"a{n}", conversation_id=plain.conversation_id)
    with_compares = compared(people.owner, "q", ("a", "b"), pick=0).prompt
    for n in range(3):
        compared(people.owner, f"q{n}", ("a", "b"), conversation_id=with_compares.conversation_id, pick=n % 2)
    urls = [reverse("admin:chat_conversation_change", args=[m.conversation_id]) for m in (plain, with_compares)]
    queries(client, urls[0])  # warm the caches
    assert queries(client, urls[0]) == queries(client, urls[1])


def test_the_list_export_takes_the_model_filters_and_audits_what_it_exports(people, client_for, chats):
    client = client_for(people.reviewer)
    url = reverse("admin:chat_conversation_export", args=["pairs"]) + f"?reply_model={SMALL}"
    response = client.post(url)
    assert response.status_code == 200
    pairs = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [(p["conversation"], p["source"], p["chosen_model"], p["rejected_model"]) for p in pairs] == [
        (chats.compared.pk, "compare", SMALL, BIG)
    ]
    rows = AuditEvent.objects.filter(action=AuditEvent.Action.EXPORTED)
    assert sorted(rows.values_list("conversation_id", flat=True)) == sorted([chats.compared.pk, chats.small.pk])
    assert len({r.details["export"] for r in rows}) == 1 and {r.details["kind"] for r in rows} == {"pairs"}

    response = client.post(reverse("admin:chat_conversation_export", args=["sft"]) + f"?model_name={SMALL}")
    [line] = b"".join(response.streaming_content).decode().splitlines()
    assert json.loads(line) | {"messages": None} == {
        "conversation": chats.small.pk,
        "model": SMALL,
        "models": [SMALL],
        "messages": None,
        "gold_answers": 0,
    }
