"""Every audited read of the review panel is audited whatever the request method: a HEAD runs the same view as a
GET (only the body is dropped, and its Content-Length still tells a match from none), and a POST to a list runs
its search too. The walk covers every place chat/admin records an audit row (found by reading the code, so a new
one fails here until it is walked) and every registered screen that mixes in an audited open or search."""

import ast
from pathlib import Path

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from chat.admin.common import AuditedSearch
from chat.models import ApiKey, AuditEvent, Feedback, GoldAnswer, Message, QuotaOverride, TrainingRun
from tests.chat.admin.conftest import make_chat

pytestmark = pytest.mark.django_db

ADMIN = Path(__file__).resolve().parents[3] / "chat" / "admin"
OPENED, SEARCHED = AuditEvent.Action.OPENED_TRANSCRIPT, AuditEvent.Action.SEARCHED

# Where chat/admin writes an audit row of a read, and which walk below covers it. The writes (review, gold
# answer, cancel, export, delete) go through chat.review.services from POST-only views, walked in the last test.
AUDITED_READS = {
    "AuditedOpen.render_change_form": "the message, feedback and gold-answer pages",
    "AuditedSearch._search_record": "the searched lists",
    "ConversationAdmin.render_change_form": "the transcript page",
    "ConversationAdmin.gold_answer_view": "the gold-answer page of a reply",
}


def audit_call_sites() -> set[str]:
    """Class.method of every function in chat/admin that calls ``audit_record``."""
    found = set()
    for path in ADMIN.glob("*.py"):
        tree = ast.parse(path.read_text())
        for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
            for func in (node for node in cls.body if isinstance(node, ast.FunctionDef)):
                for call in (node for node in ast.walk(func) if isinstance(node, ast.Call)):
                    name = getattr(call.func, "attr", getattr(call.func, "id", ""))
                    if name == "audit_record":
                        found.add(f"{cls.name}.{func.name}")
    return found


@pytest.fixture
def chat(people):
    conversation = make_chat(people.owner, content="a secret {n}")
    reply = conversation.replies[0]
    feedback = Feedback.objects.create(message=reply, user=people.owner, rating=-1, comment="secret too")
    gold = GoldAnswer.objects.create(message=reply, content="a secret answer", author=people.reviewer)
    return type("Chat", (), dict(conversation=conversation, reply=reply, feedback=feedback, gold=gold))


def opens(chat) -> list[tuple[str, str, dict]]:
    """Each page that opens a transcript or a message, and the row it writes."""
    c, r = chat.conversation, chat.reply
    return [
        (reverse("admin:chat_conversation_change", args=[c.pk]), "conversation", {"page": 1}),
        (reverse("admin:chat_conversation_gold", args=[c.pk, r.pk]), "gold", {"page": "gold_answer"}),
        (reverse("admin:chat_message_change", args=[r.pk]), "message", {"page": "message"}),
        (reverse("admin:chat_feedback_change", args=[chat.feedback.pk]), "feedback", {"page": "feedback"}),
        (reverse("admin:chat_goldanswer_change", args=[chat.gold.pk]), "goldanswer", {"page": "goldanswer"}),
    ]


SEARCHES = [("conversation", 1), ("message", 2), ("feedback", 1), ("goldanswer", 1)]  # matches of "secret"
# Chat screens with a search box over no one's words: usernames, actor names, an API key's name and prefix, a
# training run's name.
NOT_PEOPLES_WORDS = {AuditEvent, ApiKey, QuotaOverride, TrainingRun}


def test_the_walk_covers_every_audited_read_and_every_screen_that_has_one(chat):
    sites = audit_call_sites()
    assert sites == set(AUDITED_READS)
    walked = {"open": {model for _, model, _ in opens(chat)}, "search": {model for model, _ in SEARCHES}}
    for model, model_admin in admin.site._registry.items():
        for klass in type(model_admin).__mro__:
            for site in sites:
                owner = site.split(".")[0]
                if klass.__name__ == owner:
                    kind = "search" if owner == "AuditedSearch" else "open"
                    assert model._meta.model_name in walked[kind], (model, site)
        if model_admin.search_fields and model._meta.app_label == "chat":  # a search box on a chat screen
            assert isinstance(model_admin, AuditedSearch) or model in NOT_PEOPLES_WORDS, model


@pytest.mark.parametrize("method", ["get", "head"])
def test_opening_a_transcript_or_a_message_is_audited_for_get_and_head(people, chat, method):
    for url, name, details in opens(chat):
        client = Client()
        client.force_login(people.reviewer)
        before = AuditEvent.objects.count()
        response = getattr(client, method)(url)
        assert response.status_code == 200, (name, method)
        rows = list(AuditEvent.objects.order_by("id")[before:].values_list("actor_name", "action", "details"))
        assert rows == [("reviewer", OPENED, details)], (name, method)


@pytest.mark.parametrize("method", ["get", "head", "post"])
def test_a_search_is_audited_for_every_method_that_runs_it(people, chat, method):
    """A POST to a list with ``q`` in its address and no action shows the searched list as a GET does."""
    for name, results in SEARCHES:
        for words, found in (("secret", results), ("no such words", 0)):
            client = Client()  # a session of its own: a search already recorded in it would not be again
            client.force_login(people.reviewer)
            before = AuditEvent.objects.count()
            url = reverse(f"admin:chat_{name}_changelist") + f"?q={words.replace(' ', '+')}"
            response = getattr(client, method)(url)
            assert response.status_code == 200, (name, method)
            rows = list(AuditEvent.objects.order_by("id")[before:].values_list("actor_name", "action", "details"))
            assert rows == [("reviewer", SEARCHED, {"page": name, "query": words, "results": found})], (name, method)


def test_an_action_run_over_a_whole_search_records_the_search(people, chat, client_for):
    """ "Select all" with a search acts on every match, and its message says how many: the search ran."""
    url = reverse("admin:chat_conversation_changelist") + "?q=secret"
    response = client_for(people.reviewer).post(
        url, {"action": "approve", "select_across": "1", "index": "0", "_selected_action": [chat.conversation.pk]}
    )
    assert response.status_code == 302
    searched = AuditEvent.objects.filter(action=SEARCHED).values_list("details", flat=True)
    assert list(searched) == [{"page": "conversation", "query": "secret", "results": 1}]


def test_a_head_or_get_never_runs_an_audited_write(people, chat, client_for):
    """The writes are POST only: a HEAD (or GET) of their address changes nothing and writes no row."""
    client = client_for(people.reviewer)
    c, r = chat.conversation, chat.reply
    for url in (
        reverse("admin:chat_conversation_review", args=[c.pk]),
        reverse("admin:chat_conversation_export", args=["sft"]),
        reverse("admin:chat_reviewqueue_export", args=["sft"]),
        reverse("admin:chat_livegeneration_cancel", args=[r.pk]),
    ):
        for method in ("get", "head"):
            assert getattr(client, method)(url).status_code == 405, (url, method)
    assert client.head(reverse("admin:chat_conversation_gold", args=[c.pk, r.pk])).status_code == 200
    assert list(AuditEvent.objects.values_list("action", flat=True)) == [OPENED]  # the gold page's open, no write
    assert GoldAnswer.objects.get().content == "a secret answer"
    assert Message.objects.get(pk=r.pk).status == "complete"
