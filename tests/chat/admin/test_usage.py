"""The usage page: exact figures per day and per person, the range form, who may see it, and its query count."""

import datetime
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chat.models import Conversation, Message
from chat.review import usage
from tests.chat.admin.conftest import exchange

pytestmark = pytest.mark.django_db

URL = reverse("admin:chat_usagereport_changelist")
MARCH = "?from=2025-03-01&to=2025-03-04"
FIELDS = (
    "user_messages",
    "replies",
    "prompt_tokens",
    "completion_tokens",
    "median_ttft_ms",
    "median_tokens_per_s",
    "failed",
    "stopped",
)


def figures(row) -> tuple:
    return tuple(getattr(row, name) for name in FIELDS)


def report_for(client, query=MARCH):
    response = client.get(URL + query)
    assert response.status_code == 200
    return response, response.context["report"]


def test_figures_per_day_with_empty_days_as_zeros(people, client_for, usage_data):
    response, report = report_for(client_for(people.reviewer))
    days = {row.day.isoformat(): figures(row) for row in report.days}
    assert days == {
        "2025-03-01": (4, 4, 34, 59, 100, 20.0, 1, 0),  # medians of 3 timed replies; the failed one has none
        "2025-03-02": (1, 1, 8, 4, 200, 5.0, 0, 1),
        "2025-03-03": (0, 0, 0, 0, None, None, 0, 0),
        "2025-03-04": (2, 2, 41, 81, 500, 10.0, 0, 0),  # two replies: the mean of both
    }
    assert list(days) == sorted(days)
    chart = json.loads(
        response.content.decode().split('id="usage-data" type="application/json">')[1].split("</script>")[0]
    )
    assert chart == {
        "days": list(days),
        "replies": [4, 1, 0, 2],
        "failed": [1, 0, 0, 0],
        "stopped": [0, 1, 0, 0],
        "completion_tokens": [59, 4, 0, 81],
        "models": [  # by tokens: m1 144, m2 83 (m3 only outside the range)
            {"model": "m1", "replies": [2, 1, 0, 1], "completion_tokens": [50, 4, 0, 40]},
            {"model": "m2", "replies": [2, 0, 0, 1], "completion_tokens": [9, 0, 0, 41]},
        ],
    }


def test_figures_per_person_sorted_by_tokens_and_in_total(people, client_for, usage_data):
    _, report = report_for(client_for(people.reviewer))
    assert [(row.username, figures(row)) for row in report.people] == [
        ("bob", (3, 3, 48, 90, 400, 12.0, 0, 0)),  # 138 tokens
        ("alice", (4, 4, 35, 54, 200, 10.0, 1, 1)),  # 89 tokens
    ]
    assert report.others is None
    assert figures(report.total) == (7, 7, 83, 144, 250, 11.0, 1, 1)  # six timed replies: an even median
    assert report.total.people == 2


def test_figures_per_model_are_its_replies_and_add_up_to_the_total(people, client_for, usage_data):
    """A reply counts for the model that wrote it; messages sent belong to no model (a Compare's one message has
    two), so the per-model table has no such column."""
    response, report = report_for(client_for(people.reviewer))
    assert [(m.model, figures(m)) for m in report.models] == [
        ("m1", (0, 4, 50, 94, 250, 9.0, 0, 1)),  # medians of 100/200/300/400 ms and 5/8/10/20 tok/s
        ("m2", (0, 3, 33, 50, 325, 21.0, 1, 0)),  # the failed reply has no timings
    ]
    for name in ("replies", "prompt_tokens", "completion_tokens", "failed", "stopped"):
        assert sum(getattr(m, name) for m in report.models) == getattr(report.total, name), name
    assert {day.isoformat(): f.replies for day, f in report.models[1].per_day.items()} == {
        "2025-03-01": 2,
        "2025-03-04": 1,
    }
    table = response.content.decode().split('id="usage-models"')[1].split("</table>")[0]
    assert '<th scope="row">m1</th>' in table and "Messages sent" not in table
    assert table.count("<tr>") == 4  # the head, two models, the total
    assert b'id="usage-models-chart"' in response.content


def test_people_past_the_top_are_summed_in_one_row(people, client_for, usage_data, monkeypatch):
    monkeypatch.setattr(usage, "TOP_PEOPLE", 1)
    response, report = report_for(client_for(people.reviewer))
    assert [row.username for row in report.people] == ["bob"]
    assert (report.others.people, figures(report.others)) == (1, (4, 4, 35, 54, 200, 10.0, 1, 1))
    assert b"others (1 person)" in response.content


def test_days_follow_the_site_time_zone(people, client_for, usage_data, settings):
    settings.TIME_ZONE = "Europe/Paris"  # UTC+1 in March: 1 Mar 23:30 UTC is 2 Mar, 28 Feb 23:59 UTC is 1 Mar
    _, report = report_for(client_for(people.reviewer))
    assert [(row.replies, row.prompt_tokens) for row in report.days] == [(4, 1026), (2, 15), (0, 0), (2, 41)]
    assert report.days[1].median_ttft_ms == 125


def test_the_default_range_is_the_last_30_days_ending_today(people, client_for):
    conversation = Conversation.objects.create(owner=people.owner)
    exchange(conversation, datetime.datetime.now(datetime.timezone.utc), prompt=3, completion=4, ttft=5, speed=6.0)
    response, report = report_for(client_for(people.reviewer), "")
    today = timezone.localdate()
    assert (report.start, report.end, len(report.days)) == (today - datetime.timedelta(days=29), today, 30)
    assert figures(report.days[-1]) == (1, 1, 3, 4, 5, 6.0, 0, 0)
    assert response.context["form"]["from"].value() == report.start.isoformat()


def test_the_page_shows_no_message_text(people, client_for, usage_data):
    response, _ = report_for(client_for(people.reviewer))
    assert b"private words" not in response.content
    assert b"<canvas" in response.content and b"chartjs-4.6.1/chart.umd.min.js" in response.content


@pytest.mark.parametrize(
    "query,sentence,code",
    [
        ("?from=2025-03-04&to=2025-03-01", "The start date is after the end date.", "range_reversed"),
        ("?from=2024-01-01&to=2025-01-01", "The range is 367 days; at most 366 fit on one page.", "range_too_long"),
        ("?from=2025-02-30&to=2025-03-01", "Enter a date as YYYY-MM-DD.", "invalid"),
        ("?from=yesterday", "Enter a date as YYYY-MM-DD.", "invalid"),
    ],
)
def test_a_bad_range_is_refused_with_a_sentence_and_the_page_still_renders(people, client_for, query, sentence, code):
    response = client_for(people.reviewer).get(URL + query)
    assert response.status_code == 200
    assert response.context["report"] is None
    assert sentence in response.content.decode()
    assert code in [e.code for errors in response.context["form"].errors.as_data().values() for e in errors]


def test_a_range_of_366_days_is_accepted(people, client_for):
    _, report = report_for(client_for(people.reviewer), "?from=2024-01-01&to=2024-12-31")  # a leap year
    assert len(report.days) == 366


def test_who_may_see_the_page(people, client_for, usage_data):
    normal = client_for(people.owner).get(URL)
    assert normal.status_code == 302 and normal.url.startswith(reverse("admin:login"))
    assert client_for(people.staff).get(URL).status_code == 403  # every model permission, but no review one
    assert URL.encode() not in client_for(people.staff).get(reverse("admin:index")).content
    for user in (people.reviewer, people.root):
        client = client_for(user)
        assert client.get(URL).status_code == 200
        assert URL.encode() in client.get(reverse("admin:index")).content


def test_the_page_has_no_other_url(people, client_for, usage_data):
    """No change, history or add page: those would show a message's text."""
    reply = Message.objects.filter(role="assistant").first()
    client = client_for(people.reviewer)
    for tail in (f"{reply.pk}/change/", f"{reply.pk}/history/", "add/", f"{reply.pk}/delete/"):
        response = client.get(URL + tail)
        assert response.status_code in (302, 404), tail
        assert b"private words" not in response.content
    assert client.post(URL, {"from": "2025-03-01"}).status_code == 200  # a POST changes nothing: same page


def add_rows(count: int, django_user_model, tag: str):
    """``count`` exchanges over 5 days, spread over ``count // 4 + 1`` new people (past the top 50 at 200)."""
    start = datetime.datetime(2025, 3, 1, 12, tzinfo=datetime.timezone.utc)
    owners = [
        Conversation.objects.create(owner=django_user_model.objects.create_user(username=f"{tag}{n}"))
        for n in range(count // 4 + 1)
    ]
    for n in range(count):
        exchange(
            owners[n % len(owners)],
            start + datetime.timedelta(days=n % 5, minutes=n),
            prompt=n,
            completion=n + 1,
            ttft=n + 2,
            speed=float(n),
            status="failed" if n % 7 == 0 else "complete",
        )


def queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(URL + "?from=2025-02-25&to=2025-03-10")
    assert response.status_code == 200
    return len(captured)


def test_the_page_costs_the_same_with_10_or_200_rows(people, client_for, django_user_model):
    client = client_for(people.reviewer)
    add_rows(10, django_user_model, "few")
    few = queries(client)
    add_rows(200, django_user_model, "many")
    many = queries(client)
    assert many == few, f"{few} queries with 10 rows, {many} with 210"
    assert few <= 15  # session, user, two for permissions, then the report's eleven
    report = client.get(URL + "?from=2025-02-25&to=2025-03-10").context["report"]
    assert len(report.people) == usage.TOP_PEOPLE and report.others.people == 3 + 51 - usage.TOP_PEOPLE
    assert report.total.replies == 210 and sum(p.replies for p in report.people) + report.others.replies == 210


def test_a_reviewer_without_staff_status_is_sent_to_log_in(people, client_for, django_user_model, reviewer_group):
    """The review permission alone is not the admin: Django's staff check comes first."""
    user = django_user_model.objects.create_user(username="outside")
    user.groups.add(reviewer_group)
    response = client_for(user).get(URL)
    assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))
