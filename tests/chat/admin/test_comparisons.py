"""The Compares list: reviewers only, read-only, no text on it; its filters by model (either side), pick and
blindness; a row opens its transcript at the compared message, where the open is audited; a fixed number of
queries per page."""

import pytest
from django.urls import reverse

from chat.models import AuditEvent, Comparison
from tests.chat.admin.test_queries import queries
from tests.chat.review.conftest import BIG, SMALL, compared, two_models  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db

LIST = reverse("admin:chat_comparison_changelist")


@pytest.fixture
def compares(people, two_models):  # noqa: F811
    """``picked``: big vs small, small picked; ``blind``: small vs big, blind, not picked."""
    picked = compared(people.owner, "secret question", ("secret big", "secret small"), pick=1)
    blind = compared(people.owner, "other secret", ("s1", "s2"), model=SMALL, compare=BIG, blind=True)
    return type("Compares", (), dict(picked=picked, blind=blind))


def rows(client, query="") -> dict[int, object]:
    response = client.get(LIST + query)
    assert response.status_code == 200
    return {row.pk: row for row in response.context["cl"].result_list}


def test_the_list_shows_the_models_the_pick_and_no_text(people, client_for, compares):
    client = client_for(people.reviewer)
    listed = rows(client)
    picked, blind = listed[compares.picked.pk], listed[compares.blind.pk]
    assert (picked.first_model, picked.second_model, picked.chosen_model, picked.blind) == (BIG, SMALL, SMALL, False)
    assert (blind.first_model, blind.second_model, blind.chosen_model, blind.blind) == (SMALL, BIG, None, True)
    page = client.get(LIST).content.decode()
    assert f"{SMALL} (second)" in page and "not yet" in page and "owner" in page
    assert "secret" not in page  # no person's words on a list nobody's opening is audited for
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    "query,expected",
    [
        (f"?model_name={SMALL}", {"picked", "blind"}),  # either side
        ("?picked=yes", {"picked"}),
        ("?picked=no", {"blind"}),
        ("?blind__exact=1", {"blind"}),
        ("?model_name=nobody", set()),
    ],
)
def test_the_filters(people, client_for, compares, query, expected):
    assert set(rows(client_for(people.reviewer), query)) == {getattr(compares, n).pk for n in expected}


def test_a_row_opens_its_transcript_at_the_compared_message_where_the_open_is_audited(people, client_for, compares):
    client = client_for(people.reviewer)
    c = compares.picked
    transcript = reverse("admin:chat_conversation_change", args=[c.prompt.conversation_id])
    assert f'href="{transcript}#m{c.prompt_id}"' in client.get(LIST).content.decode()
    response = client.get(reverse("admin:chat_comparison_change", args=[c.pk]))
    assert response.status_code == 302 and response.url == f"{transcript}#m{c.prompt_id}"
    assert not AuditEvent.objects.exists()  # the redirect reads nothing; the page it leads to records the open
    assert client.get(response.url).status_code == 200
    assert AuditEvent.objects.get().conversation_id == c.prompt.conversation_id
    assert client.get(reverse("admin:chat_comparison_change", args=[999999])).status_code == 404


def test_only_reviewers_see_it_and_nobody_changes_it(people, client_for, compares):
    change = reverse("admin:chat_comparison_change", args=[compares.picked.pk])
    staff = client_for(people.staff)  # every chat model permission but the review one
    assert staff.get(LIST).status_code == 403 and staff.get(change).status_code == 403
    assert LIST.encode() not in staff.get(reverse("admin:index")).content
    owner = client_for(people.owner)
    assert owner.get(LIST).status_code == 302  # to the admin's login
    for user in (people.reviewer, people.root):
        client = client_for(user)
        assert LIST.encode() in client.get(reverse("admin:index")).content
        assert client.get(LIST + "add/").status_code == 403
        assert client.post(reverse("admin:chat_comparison_delete", args=[compares.picked.pk])).status_code == 403
    assert Comparison.objects.count() == 2


def test_a_page_costs_the_same_for_2_or_12_compares(people, client_for, compares, django_user_model):
    client = client_for(people.reviewer)
    queries(client, LIST)  # warm the caches
    few = queries(client, LIST)
    for n in range(10):
        compared(django_user_model.objects.create_user(username=f"p{n}"), f"q{n}", ("a", "b"), pick=n % 2)
    assert queries(client, LIST) == few
