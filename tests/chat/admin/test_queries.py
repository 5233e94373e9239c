"""List pages make a fixed number of queries however many rows they show: every count, flag and owner comes
with the rows (annotations, select_related), never one query per row."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat.models import Feedback, GoldAnswer, Message
from chatsite import bench_admin
from tests.chat.admin.conftest import date_links, dated_chats, make_chat

pytestmark = pytest.mark.django_db


def add_chats(people, count, django_user_model):
    """``count`` conversations of 6 messages, each owner distinct, with both kinds of feedback and a failure."""
    for n in range(count):
        owner = django_user_model.objects.create_user(username=f"user{n}_{count}")
        chat = make_chat(owner, turns=3, title=f"chat {n}", reply_status="failed" if n % 3 == 0 else "complete")
        Feedback.objects.create(message=chat.replies[0], user=owner, rating=1, comment="good")
        Feedback.objects.create(message=chat.replies[1], user=owner, rating=-1)
        GoldAnswer.objects.create(message=chat.replies[1], content="better", author=people.reviewer)


def queries(client, url) -> int:
    """The queries one GET of ``url`` makes (less transaction control, counted as the benchmark counts)."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return bench_admin.counted(captured)


def test_every_benchmarked_page_costs_what_the_benchmark_expects_with_5_or_50_conversations(
    people, client_for, django_user_model
):
    """The pages ``make bench-admin`` times on 100,000 messages — the lists, searched, filtered and drilled down
    by date, the transcript, the audit log — each make the number of queries in ``bench_admin.QUERIES`` here,
    for 5 conversations and for 50: a query per row would show as a difference. The benchmark fails when the
    big data set gets another number."""
    clients = {False: client_for(people.reviewer), True: client_for(people.root)}

    def costs() -> dict[str, int]:
        measured = {}
        for page in bench_admin.pages():
            clients[page.superuser].get(page.url)  # warm Django's per-process caches (content types)
            bench_admin.as_new_search(clients[page.superuser])  # a search counted with its audit row
            measured[page.label] = queries(clients[page.superuser], page.url)
        return measured

    add_chats(people, 5, django_user_model)
    few = costs()
    add_chats(people, 45, django_user_model)
    many = costs()
    assert few == many == bench_admin.QUERIES, (few, many)
    assert max(bench_admin.QUERIES.values()) <= 15


def test_the_list_shows_the_counts_the_annotations_compute(people, client_for, django_user_model):
    add_chats(people, 3, django_user_model)
    response = client_for(people.reviewer).get(reverse("admin:chat_conversation_changelist"))
    rows = response.context["cl"].result_list
    assert {(r.message_count, r.thumbs_up, r.thumbs_down, r.has_negative) for r in rows} == {(6, 1, 1, True)}
    assert sorted(r.has_problem for r in rows) == [False, False, True]


def test_the_transcript_page_costs_the_same_for_a_short_and_a_long_chat(people, client_for):
    client = client_for(people.reviewer)
    short, long = make_chat(people.owner, turns=2), make_chat(people.owner, turns=40)
    for chat in (short, long):
        for reply in chat.replies:
            Feedback.objects.create(message=reply, user=people.owner, rating=-1, comment="meh")
            GoldAnswer.objects.create(message=reply, content="gold", author=people.reviewer)
    urls = [reverse("admin:chat_conversation_change", args=[chat.pk]) for chat in (short, long)]
    queries(client, urls[0])  # warm Django's per-process caches (content types) before counting
    costs = [queries(client, url) for url in urls]
    assert costs[0] == costs[1], costs


@pytest.mark.parametrize(
    "query,expected",
    [
        ("negative=yes", {"disliked"}),
        ("negative=no", {"plain", "failed"}),
        ("problem=yes", {"failed"}),
        ("owner=OWNER", {"plain", "failed", "disliked"}),
        ("owner=nobody", set()),
        ("review_state__exact=approved", set()),
        ("model_name=m2", {"failed"}),
        ("q=needle", {"disliked"}),
        ("q=plain", {"plain"}),
        ("q=needle+disliked", {"disliked"}),
        ("q=needle+plain", set()),  # every word, in the title or a message
        ("q=%22a+needle%22", {"disliked"}),
        ("q=%22needle+a%22", set()),  # a quoted phrase is one term
    ],
)
def test_conversation_filters_and_search(people, client_for, query, expected):
    make_chat(people.owner, title="plain")
    make_chat(people.owner, title="failed", reply_status="failed", model="m2")
    disliked = make_chat(people.owner, title="disliked", content="a needle {n}")
    Feedback.objects.create(message=disliked.replies[0], user=people.owner, rating=-1)
    response = client_for(people.reviewer).get(reverse("admin:chat_conversation_changelist") + "?" + query)
    assert response.status_code == 200
    assert {r.title for r in response.context["cl"].result_list} == expected


def test_the_conversation_list_filters_by_date_and_drills_down_the_date_hierarchy(people, client_for):
    chats = dated_chats(people.owner)
    client = client_for(people.reviewer)
    url = reverse("admin:chat_conversation_changelist")
    links = date_links(client, url, chats)
    expected = {
        "past 7 days": {"recent"},
        "old: year": {"old"},
        "old: day": {"old"},
        "ten days: day": {"ten days"},
        "ten days: year": {"recent", "ten days"}
        if chats["ten days"].created_at.year == chats["recent"].created_at.year
        else {"ten days"},
    }
    for name, query in links.items():
        response = client.get(url + query)
        assert response.status_code == 200
        assert {r.title for r in response.context["cl"].result_list} == expected[name], name


@pytest.mark.parametrize(
    "query,expected",
    [
        ("rating=down", 1),
        ("rating=up", 0),
        ("rating=none", 7),
        ("status__exact=failed", 1),
        ("finish_reason__exact=stop", 3),
        ("role__exact=assistant", 4),
        ("model_name=m1", 4),
    ],
)  # replies carry the model
def test_message_filters(people, client_for, query, expected):
    make_chat(people.owner, turns=1)
    chat = make_chat(people.owner, turns=3, reply_status="failed")
    Feedback.objects.create(message=chat.replies[0], user=people.owner, rating=-1)
    response = client_for(people.reviewer).get(reverse("admin:chat_message_changelist") + "?" + query)
    assert response.status_code == 200 and response.context["cl"].result_count == expected
    assert Message.objects.count() == 8
