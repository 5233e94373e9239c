"""Who may open whose transcript in the admin, that nobody can rewrite one, and that every open is audited."""

import pytest
from django.urls import reverse

from chat.models import AuditEvent, Conversation, Message
from tests.chat.admin.conftest import make_chat

pytestmark = pytest.mark.django_db

OPENED = AuditEvent.Action.OPENED_TRANSCRIPT


def pages(conversation):
    reply = conversation.replies[0]
    return [
        reverse("admin:chat_conversation_changelist"),
        reverse("admin:chat_conversation_change", args=[conversation.pk]),
        reverse("admin:chat_message_changelist"),
        reverse("admin:chat_message_change", args=[reply.pk]),
        reverse("admin:chat_reviewqueue_changelist"),
        reverse("admin:chat_feedback_changelist"),
        reverse("admin:chat_goldanswer_changelist"),
        reverse("admin:chat_conversation_gold", args=[conversation.pk, reply.pk]),
    ]


def row_of(page: str, message_id: int) -> str:
    """The transcript table's row of one message, as HTML."""
    return page.split(f'<tr id="m{message_id}"')[1].split("</tr>")[0]


def test_a_normal_user_cannot_reach_the_admin(people, client_for):
    conversation = make_chat(people.owner)
    client = client_for(people.owner)
    for url in [reverse("admin:index")] + pages(conversation):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login")), url
    assert not AuditEvent.objects.exists()


def test_staff_without_the_review_permission_opens_no_transcript(people, client_for):
    """Even holding every model permission of the app (view, change, add, delete), staff open nothing."""
    conversation = make_chat(people.owner, content="secret {n}")
    client = client_for(people.staff)
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert b"/admin/chat/conversation/" not in index.content and b"/admin/chat/message/" not in index.content
    for url in pages(conversation):
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"secret" not in response.content
    assert (
        client.post(
            reverse("admin:chat_conversation_review", args=[conversation.pk]), {"state": "approved"}
        ).status_code
        == 403
    )
    assert not AuditEvent.objects.exists()
    assert Conversation.objects.get().review_state == "unreviewed"


def test_a_reviewer_opens_a_transcript_and_the_open_is_audited(people, client_for):
    conversation = make_chat(people.owner, turns=2, content="<script>alert({n})</script>")
    old = conversation.replies[1]
    Message.objects.filter(pk=old.pk).update(is_current=False)
    Message.objects.create(
        conversation=conversation,
        parent=old.parent,
        role="assistant",
        content="newer answer",
        status="failed",
        finish_reason="error",
        error="worker died",
        dropped_messages=3,
    )
    client = client_for(people.reviewer)
    assert b"/admin/chat/conversation/" in client.get(reverse("admin:index")).content
    response = client.get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert(0)&lt;/script&gt;" in page  # text, escaped
    assert "alternative" in page and "newer answer" in page and "worker died" in page
    assert page.index("answer 0") < page.index("answer 1") < page.index("newer answer")  # order written
    # Each reply's metrics, in its own row: make_chat's first reply, and the failed alternative.
    first = row_of(page, conversation.replies[0].pk)
    assert "tokens 10 in / 5 out" in first and "first token 42 ms" in first and "12.5 tok/s" in first
    assert "<small>stop</small>" in first and "{&#x27;temperature&#x27;: 0.7}" in first
    assert "errornote" not in first
    failed = row_of(page, Message.objects.get(content="newer answer").pk)
    assert "failed" in failed and "<small>error</small>" in failed
    assert '<span class="errornote">worker died</span>' in failed
    assert "tokens — in / — out" in failed and "first token — · —" in failed  # none measured: dashes, not 0
    assert "3 oldest messages left out to fit" in failed
    event = AuditEvent.objects.get()
    assert (event.actor, event.actor_name, event.action, event.conversation_id) == (
        people.reviewer,
        "reviewer",
        OPENED,
        conversation.pk,
    )

    reply = conversation.replies[0]
    assert client.get(reverse("admin:chat_message_change", args=[reply.pk])).status_code == 200
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.conversation_id, event.message_id) == (OPENED, conversation.pk, reply.pk)


def test_a_long_transcript_is_shown_a_page_at_a_time(people, client_for, monkeypatch):
    from chat.review import selectors

    monkeypatch.setattr(selectors, "TRANSCRIPT_PAGE", 4)
    conversation = make_chat(people.owner, turns=5)  # 10 messages
    client = client_for(people.reviewer)
    url = reverse("admin:chat_conversation_change", args=[conversation.pk])
    first, last = client.get(url).content.decode(), client.get(url + "?page=3").content.decode()
    assert "answer 0" in first and "answer 4" not in first and "page 1 of 3" in first
    assert "answer 4" in last and "answer 0" not in last


@pytest.mark.parametrize("who", ["reviewer", "root"])
def test_nobody_rewrites_a_transcript_through_the_admin(people, client_for, who):
    """POSTs to the change and add views are refused and change nothing, for a superuser too."""
    conversation = make_chat(people.owner)
    reply = conversation.replies[0]
    client = client_for(getattr(people, who))
    stolen = {
        "owner": people.root.pk,
        "system_prompt": "obey me",
        "title": "mine",
        "content": "rewritten",
        "status": "failed",
        "role": "user",
        "conversation": conversation.pk,
        "_save": "Save",
    }
    for url in (
        reverse("admin:chat_conversation_change", args=[conversation.pk]),
        reverse("admin:chat_message_change", args=[reply.pk]),
        reverse("admin:chat_conversation_add"),
        reverse("admin:chat_message_add"),
    ):
        assert client.post(url, stolen).status_code == 403, url
    conversation.refresh_from_db()
    reply.refresh_from_db()
    assert (conversation.owner, conversation.system_prompt, conversation.title) == (people.owner, "be kind", "chat")
    assert (reply.content, reply.status, reply.role) == ("answer 0", "complete", "assistant")
    assert Conversation.objects.count() == 1 and Message.objects.count() == 4
    # The page a superuser sees has no save button and no editable field.
    page = client.get(reverse("admin:chat_conversation_change", args=[conversation.pk])).content.decode()
    assert 'name="_save"' not in page and 'name="system_prompt"' not in page and 'name="owner"' not in page


def test_only_a_superuser_deletes_and_the_deletion_is_audited(people, client_for):
    conversation = make_chat(people.owner, turns=3, title="to go")
    delete_url = reverse("admin:chat_conversation_delete", args=[conversation.pk])
    assert client_for(people.reviewer).post(delete_url, {"post": "yes"}).status_code == 403
    assert (
        client_for(people.reviewer)
        .post(reverse("admin:chat_message_delete", args=[conversation.replies[0].pk]), {"post": "yes"})
        .status_code
        == 403
    )
    assert Conversation.objects.filter(pk=conversation.pk).exists()

    root = client_for(people.root)
    confirm = root.get(delete_url)
    assert confirm.status_code == 200 and b"6 messages" in confirm.content
    assert root.post(delete_url, {"post": "yes"}).status_code == 302
    assert not Conversation.objects.exists() and not Message.objects.exists()
    event = AuditEvent.objects.get(action=AuditEvent.Action.DELETED)
    assert (event.actor, event.conversation_id) == (people.root, conversation.pk)
    # Ids and counts only: the deleted transcript's title and its owner's name are the person's, and go with it.
    assert event.details == {"owner_id": people.owner.pk, "messages": 6}


def test_bulk_delete_goes_through_the_audited_service(people, client_for):
    chats = [make_chat(people.owner, title=f"c{n}") for n in range(3)]
    response = client_for(people.root).post(
        reverse("admin:chat_conversation_changelist"),
        {"action": "delete_selected", "_selected_action": [c.pk for c in chats[:2]], "post": "yes"},
    )
    assert response.status_code == 302
    assert list(Conversation.objects.values_list("title", flat=True)) == ["c2"]
    assert sorted(AuditEvent.objects.filter(action="deleted").values_list("conversation_id", flat=True)) == sorted(
        c.pk for c in chats[:2]
    )


def test_the_audit_log_is_for_superusers_and_cannot_be_changed(people, client_for):
    conversation = make_chat(people.owner)
    client_for(people.reviewer).get(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    event = AuditEvent.objects.get()
    changelist = reverse("admin:chat_auditevent_changelist")
    change = reverse("admin:chat_auditevent_change", args=[event.pk])
    for who in (people.reviewer, people.staff):
        assert client_for(who).get(changelist).status_code == 403
    root = client_for(people.root)
    listing = root.get(changelist + "?actor=REVIEWER&action=opened_transcript")
    assert listing.status_code == 200 and listing.context["cl"].result_count == 1
    assert root.get(changelist + "?actor=nobody").context["cl"].result_count == 0
    assert root.get(change).status_code == 200
    assert root.post(change, {"action": "deleted", "actor_name": "x"}).status_code == 403
    assert root.post(reverse("admin:chat_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    assert root.post(
        changelist, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    ).status_code in (200, 302)
    event.refresh_from_db()
    assert event.action == OPENED and AuditEvent.objects.filter(action=OPENED).count() == 1


def test_opening_a_feedback_or_gold_answer_page_is_audited_too(people, client_for):
    from chat.models import Feedback, GoldAnswer

    conversation = make_chat(people.owner)
    reply = conversation.replies[0]
    feedback = Feedback.objects.create(message=reply, user=people.owner, rating=-1, comment="private words")
    gold = GoldAnswer.objects.create(message=reply, content="better", author=people.reviewer)
    for url in (
        reverse("admin:chat_feedback_change", args=[feedback.pk]),
        reverse("admin:chat_goldanswer_change", args=[gold.pk]),
    ):
        assert client_for(people.staff).get(url).status_code == 403
        assert client_for(people.reviewer).get(url).status_code == 200
    assert list(
        AuditEvent.objects.order_by("id").values_list("action", "conversation_id", "message_id", "details")
    ) == [
        (OPENED, conversation.pk, reply.pk, {"page": "feedback"}),
        (OPENED, conversation.pk, reply.pk, {"page": "goldanswer"}),
    ]


@pytest.mark.django_db(transaction=True)
def test_migration_0004_makes_the_reviewer_group_with_exactly_the_review_permission():
    """The migration itself, run by Django's executor from 0003 to 0004 on this database: no fixture makes the
    group (tests/conftest.py's ``reviewer_group`` does, for the other tests), and the permission row is removed
    first, so the migration must make both (post_migrate, which would make the permission, runs only later)."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, target = ("chat", "0003_review_feedback_audit"), ("chat", "0004_reviewer_group")
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        executor = MigrationExecutor(connection)
        executor.migrate([before])
        old = executor.loader.project_state([before]).apps
        old.get_model("auth", "Group").objects.filter(name="reviewer").delete()
        old.get_model("auth", "Permission").objects.filter(codename="review_conversation").delete()

        executor = MigrationExecutor(connection)  # a fresh loader: it reads what is applied now
        executor.migrate([target])
        apps = executor.loader.project_state([target]).apps
        group = apps.get_model("auth", "Group").objects.get(name="reviewer")
        assert [f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.all()] == [
            "chat.review_conversation"
        ]
    finally:
        MigrationExecutor(connection).migrate(leaves)  # every app at its latest again, for the tests after


def test_a_staff_member_in_the_reviewer_group_may_review(people):
    from django.contrib.auth.models import Group

    from chat.review.services import can_review

    assert not can_review(people.staff)
    people.staff.groups.add(Group.objects.get(name="reviewer"))
    staff = type(people.staff).objects.get(pk=people.staff.pk)  # a fresh object: Django caches permissions
    assert can_review(staff) and not can_review(people.owner)


def test_with_review_off_nobody_opens_a_transcript_and_the_chat_page_says_so(people, client_for, settings):
    """The site setting the chat page shows is the one the panel obeys: off, even a superuser opens nothing."""
    conversation = make_chat(people.owner, content="secret {n}")
    on = client_for(people.owner).get(reverse("chat:index")).content.decode()
    assert "Staff reviewers on this site may read your conversations" in on
    settings.CHAT_REVIEW_ENABLED = False
    off = client_for(people.owner).get(reverse("chat:index")).content.decode()
    assert "Your conversations are private on this site" in off and "may read your conversations" not in off
    for user in (people.reviewer, people.root):
        client = client_for(user)
        for url in pages(conversation):
            response = client.get(url)
            assert response.status_code == 403, (user, url)
            assert b"secret" not in response.content
    assert not AuditEvent.objects.exists()


def test_the_audit_log_filters_by_conversation_message_actor_action_and_date(people, client_for):
    import datetime

    from django.utils import timezone

    from chat.review.services import audit_record

    def row(actor, action, conversation=None, message=None, days_ago=0):
        event = audit_record(actor=actor, action=action, conversation_id=conversation, message_id=message)
        AuditEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - datetime.timedelta(days=days_ago))
        return event.pk

    ids = {
        "open 7": row(people.reviewer, OPENED, 7),
        "open 7/70": row(people.reviewer, OPENED, 7, 70),
        "open 8/80": row(people.reviewer, OPENED, 8, 80, days_ago=30),
        "review 7": row(people.root, AuditEvent.Action.REVIEW_CHANGED, 7),
        "export 8": row(people.root, AuditEvent.Action.EXPORTED, 8, days_ago=30),
    }
    root = client_for(people.root)
    url = reverse("admin:chat_auditevent_changelist")
    page = root.get(url).content.decode()
    assert 'name="conversation_id"' in page and 'name="message_id"' in page  # the boxes are on the page

    def listed(query):
        response = root.get(f"{url}?{query}")
        assert response.status_code == 200, query
        return {name for name, pk in ids.items() if pk in {e.pk for e in response.context["cl"].result_list}}

    assert listed("conversation_id=7") == {"open 7", "open 7/70", "review 7"}
    assert listed("conversation_id=8&action__exact=exported") == {"export 8"}
    assert listed("message_id=80") == {"open 8/80"}
    assert listed("message_id=70&conversation_id=8") == set()
    assert listed("actor=root") == {"review 7", "export 8"}
    assert listed("action__exact=opened_transcript") == {"open 7", "open 7/70", "open 8/80"}
    since = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0) - datetime.timedelta(days=7)
    from urllib.parse import urlencode

    assert listed(urlencode({"created_at__gte": str(since)})) == {"open 7", "open 7/70", "review 7"}
    assert listed("conversation_id=seven") == listed("message_id=%C2%B2") == set()  # not an id: nothing
    for who in (people.reviewer, people.staff):  # the filters open no door
        assert client_for(who).get(f"{url}?conversation_id=7").status_code == 403


def test_a_search_of_peoples_text_is_audited_and_showing_a_list_is_not(people, client_for):
    from chat.models import Feedback, GoldAnswer

    conversation = make_chat(people.owner, content="a secret {n}")
    make_chat(people.owner, title="other")
    Feedback.objects.create(message=conversation.replies[0], user=people.owner, rating=-1, comment="secret too")
    GoldAnswer.objects.create(message=conversation.replies[0], content="better", author=people.reviewer)
    client = client_for(people.reviewer)
    for name in ("conversation", "message", "feedback", "goldanswer"):
        assert client.get(reverse(f"admin:chat_{name}_changelist")).status_code == 200
    assert not AuditEvent.objects.exists()  # lists shown, nothing searched: no row

    expected = []
    for name, query, results in (
        ("conversation", "secret", 1),
        ("message", "  secret ", 2),
        ("feedback", "secret", 1),
        ("goldanswer", "nothing like it", 0),
    ):
        response = client.get(reverse(f"admin:chat_{name}_changelist"), {"q": query})
        assert response.status_code == 200 and response.context["cl"].result_count == results
        expected.append(
            ("reviewer", "searched", None, None, {"page": name, "query": query.strip(), "results": results})
        )
    assert (
        list(
            AuditEvent.objects.order_by("id").values_list(
                "actor_name", "action", "conversation_id", "message_id", "details"
            )
        )
        == expected
    )

    before = AuditEvent.objects.count()
    assert client_for(people.staff).get(reverse("admin:chat_message_changelist"), {"q": "secret"}).status_code == 403
    assert client.get(reverse("admin:chat_message_changelist"), {"q": "secret", "no_such": "1"}).status_code == 302
    assert AuditEvent.objects.count() == before  # refused, or no list shown: nothing was read, nothing recorded


def test_turning_a_page_or_sorting_a_search_writes_no_second_row(people, client_for, monkeypatch):
    """One ``searched`` row per search, not per page of it: only ``p``, ``o`` and ``all`` changing is the same
    search (the session remembers the one last recorded); other words, another filter, another list, the list
    with no search between, or another reviewer's session, are searches of their own."""
    from django.contrib import admin

    make_chat(people.owner, turns=3, content="a secret {n}")
    monkeypatch.setattr(admin.site._registry[Message], "list_per_page", 1)  # three matches: three pages
    client, url = client_for(people.reviewer), reverse("admin:chat_message_changelist")

    def searched(**params) -> list:
        response = client.get(url, params)
        assert response.status_code == 200 and response.context["cl"].result_count >= 1, params
        return [e.details["query"] for e in AuditEvent.objects.order_by("id")]

    assert searched(q="secret") == ["secret"]
    assert searched(q="secret", p=2) == ["secret"]
    assert searched(q=" secret ", p=3, o="-1") == ["secret"]  # the same words, stripped as the search strips them
    assert searched(q="secret", o="2.-1") == ["secret"]
    assert searched(q="secret", all="") == ["secret"]
    assert searched(q="secret", role__exact="user", p=2) == ["secret", "secret"]  # a filter: another search
    assert searched(q="secret", role__exact="user", o="1") == ["secret", "secret"]
    assert searched(q="secret") == ["secret"] * 3  # back to the first search: recorded again
    assert searched(q="a secret", p=2) == ["secret"] * 3 + ["a secret"]  # other words, whatever the page
    client.get(url)  # the list, no search: the next search is a new one even with the same words
    assert searched(q="a secret", p=2) == ["secret"] * 3 + ["a secret"] * 2
    assert client.get(reverse("admin:chat_conversation_changelist"), {"q": "a secret"}).status_code == 200
    assert AuditEvent.objects.latest("id").details["page"] == "conversation"  # another list: its own search
    assert client_for(people.reviewer).get(url, {"q": "secret", "p": 2}).status_code == 200  # another session
    assert AuditEvent.objects.count() == 7


@pytest.mark.parametrize(
    "changelist, lookup",
    [
        ("admin:chat_message_changelist", "content__icontains"),
        ("admin:chat_conversation_changelist", "title__icontains"),
        ("admin:chat_conversation_changelist", "system_prompt__contains"),
        ("admin:chat_reviewqueue_changelist", "title__icontains"),
        ("admin:chat_feedback_changelist", "comment__icontains"),
        ("admin:chat_goldanswer_changelist", "content__startswith"),
        ("admin:chat_livegeneration_changelist", "content__icontains"),
    ],
)
def test_peoples_words_cannot_be_filtered_from_the_address_unrecorded(people, client_for, changelist, lookup):
    """Django lets a list be filtered by any of its model's own fields in the query string: on people's words
    that is a search the search box would have recorded. Refused with a sentence; nothing is read or recorded."""
    make_chat(people.owner, title="my secret diagnosis", content="my secret {n}")
    reviewer = client_for(people.reviewer)
    response = reviewer.get(reverse(changelist), {lookup: "secret"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "secret" not in html and "found with the search box (each search is recorded)" in html
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.SEARCHED).exists()
    assert reviewer.get(reverse(changelist)).status_code == 200  # the list itself, and its filters, still open
