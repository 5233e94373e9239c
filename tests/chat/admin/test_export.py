"""The dataset export: the exact SFT transcripts and preference pairs of a conversation with every kind of
reply, its audit rows, who may run it, the filtered-list export, and its cost in queries."""

import json
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chat.models import AuditEvent, Conversation, Feedback, GoldAnswer, Message
from chat.review import dataset, services
from tests.chat.admin.conftest import date_links, dated_chats, make_chat

pytestmark = pytest.mark.django_db

EXPORTED = AuditEvent.Action.EXPORTED
CHANGELISTS = ["admin:chat_conversation_changelist", "admin:chat_reviewqueue_changelist"]


def sibling(reply, content, status="complete", current=False):
    """A regenerated alternative of ``reply``: another answer to the same user turn."""
    return Message.objects.create(
        conversation=reply.conversation,
        parent=reply.parent,
        role="assistant",
        content=content,
        status=status,
        is_current=current,
        model_name="m1",
    )


def turn(parent, question, answer, status="complete"):
    user = Message.objects.create(conversation=parent.conversation, parent=parent, role="user", content=question)
    return Message.objects.create(
        conversation=parent.conversation, parent=user, role="assistant", content=answer, status=status, model_name="m1"
    )


STOPPED_TEXT = "answer 0 \u2713\u2028cut\x85\n"  # line breaks inside text must not split the JSONL line


@pytest.fixture
def dataset_chats(people):
    """``full``: system prompt; reply a0 👎 with a gold answer; the user turn q1 answered four times — a1 👎
    (on a branch no longer shown, which goes on with q2/a2, a2 with a gold answer), a1x and a1y unrated with
    the same text, a1f failed 👎 with no text, a1n 👍 (shown); then q3 answered by a failed reply and q4/a4
    after it. ``short``: no system prompt, a0 stopped with text, a1 still streaming. ``failed``: its only
    reply failed."""
    full = make_chat(people.owner, turns=3, title="full")
    a0, a1, a2 = full.replies
    GoldAnswer.objects.create(message=a0, content="gold 0", author=people.reviewer)
    GoldAnswer.objects.create(message=a2, content="gold 2", author=people.reviewer)
    Message.objects.filter(pk__in=[a1.pk, a2.parent_id, a2.pk]).update(is_current=False)  # q1 stays shown
    a1x, a1y = sibling(a1, "answer 1 bis"), sibling(a1, "answer 1 bis")
    a1f = sibling(a1, "", status="failed")
    a1n = sibling(a1, "answer 1 again", current=True)
    a3 = turn(a1n, "question 3", "", status="failed")
    a4 = turn(a3, "question 4", "answer 4")
    for reply, rating in ((a0, -1), (a1, -1), (a1f, -1), (a1n, 1), (a4, 1)):
        Feedback.objects.create(message=reply, user=people.owner, rating=rating)

    short = make_chat(people.owner, turns=2, title="short", reply_status="streaming", model="m2")
    Conversation.objects.filter(pk=short.pk).update(system_prompt="")
    Message.objects.filter(pk=short.replies[0].pk).update(
        status="stopped", finish_reason="cancelled", content=STOPPED_TEXT
    )
    failed = make_chat(people.owner, turns=1, title="failed", reply_status="failed")
    ids = dict(a0=a0.pk, a1=a1.pk, a2=a2.pk, a1x=a1x.pk, a1y=a1y.pk, a1n=a1n.pk)
    return type("Chats", (), dict(full=full, short=short, failed=failed, ids=ids))


def lines(response) -> list[dict]:
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content).decode()
    assert body == "" or body.endswith("\n")
    return [json.loads(line) for line in body.splitlines()]  # the strictest splitter there is


def export(client, kind, query="", changelist="admin:chat_conversation_changelist"):
    url = reverse(changelist.replace("changelist", "export"), args=[kind])
    return client.post(url + ("?" + query if query else ""))


def run_action(client, kind, chats, changelist="admin:chat_conversation_changelist"):
    return client.post(reverse(changelist), {"action": f"export_{kind}", "_selected_action": [c.pk for c in chats]})


SYSTEM = {"role": "system", "content": "be kind"}


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


def test_sft_lines_are_the_shown_branch_with_gold_answers_up_to_the_first_reply_without_text(
    people, client_for, dataset_chats
):
    chats = dataset_chats
    response = run_action(client_for(people.reviewer), "sft", [chats.full, chats.short, chats.failed])
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-sft-')
    assert response["Content-Disposition"].endswith('.jsonl"')
    assert lines(response) == [  # in id order; "failed" has no assistant turn left, so no line
        {
            "conversation": chats.full.pk,
            "model": "m1",
            "models": ["m1", "m1"],
            "gold_answers": 1,
            "messages": [
                SYSTEM,
                user("question <b>0</b>"),
                bot("gold 0"),
                user("question <b>1</b>"),
                bot("answer 1 again"),
            ],
        },
        {
            "conversation": chats.short.pk,
            "model": "m2",
            "models": ["m2"],
            "gold_answers": 0,
            "messages": [user("question <b>0</b>"), bot(STOPPED_TEXT)],
        },
    ]


def test_preference_pairs_are_exactly_gold_rating_and_alternatives(people, client_for, dataset_chats):
    chats, ids = dataset_chats, dataset_chats.ids
    response = run_action(client_for(people.reviewer), "pairs", [chats.full, chats.short, chats.failed])
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-pairs-')
    pairs = lines(response)
    q0 = [SYSTEM, user("question <b>0</b>")]
    q1 = q0 + [bot("answer 0"), user("question <b>1</b>")]  # what the model saw: a0's own text, not gold
    q2 = q1 + [bot("answer 1"), user("question <b>2</b>")]  # a2's own branch, through a1, not the shown a1n

    def pair(source, prompt, chosen, rejected, message, chosen_message=None):
        return {
            "prompt": prompt,
            "chosen": [bot(chosen)],
            "rejected": [bot(rejected)],
            "source": source,
            "conversation": chats.full.pk,
            "message": message,
            "chosen_message": chosen_message,
            "chosen_model": None if chosen_message is None else "m1",
            "rejected_model": "m1",
            "blind": None,
        }

    expected = [
        pair("gold", q0, "gold 0", "answer 0", ids["a0"]),
        pair("gold", q2, "gold 2", "answer 2", ids["a2"]),
        pair("alternatives", q1, "answer 1 bis", "answer 1", ids["a1"], ids["a1x"]),  # unrated over 👎
        pair("rating", q1, "answer 1 again", "answer 1", ids["a1"], ids["a1n"]),  # 👍 over 👎
        pair("alternatives", q1, "answer 1 again", "answer 1 bis", ids["a1x"], ids["a1n"]),  # 👍 over unrated
    ]
    key = lambda p: json.dumps(p, sort_keys=True)  # noqa: E731
    assert sorted(pairs, key=key) == sorted(expected, key=key)
    # a1y repeats a1x's text: its pairs would repeat theirs, so there are none; nor any of the failed a1f
    assert len(
        {(json.dumps(p["prompt"]), p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs}
    ) == len(pairs)


@pytest.mark.parametrize("kind", ["sft", "pairs"])
@pytest.mark.parametrize("changelist", CHANGELISTS)
def test_every_export_leaves_one_audit_row_per_conversation_with_one_export_id(
    people, client_for, dataset_chats, kind, changelist
):
    chats = [dataset_chats.full, dataset_chats.short, dataset_chats.failed]
    client = client_for(people.reviewer)
    assert run_action(client, kind, chats[:2], changelist).status_code == 200
    rows = list(AuditEvent.objects.filter(action=EXPORTED).order_by("conversation_id"))
    assert [(r.actor, r.actor_name, r.conversation_id, r.message_id) for r in rows] == [
        (people.reviewer, "reviewer", c.pk, None) for c in chats[:2]
    ]
    export_id = rows[0].details["export"]
    uuid.UUID(export_id)
    assert all(r.details == {"kind": kind, "export": export_id} for r in rows)

    assert export(client, kind, changelist=changelist).status_code == 200  # the whole list: a new export id
    second = AuditEvent.objects.filter(action=EXPORTED).exclude(details__export=export_id)
    assert sorted(second.values_list("conversation_id", flat=True)) == [c.pk for c in chats]
    assert len({r.details["export"] for r in second}) == 1
    assert AuditEvent.objects.count() == 5  # nothing else was recorded (no "opened" rows)


def test_the_list_export_is_a_post_with_the_csrf_token(people, dataset_chats):
    """A link on another site cannot start an export (it writes audit rows in the reviewer's name)."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(people.reviewer)
    url = reverse("admin:chat_conversation_export", args=["sft"])
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403  # no token
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("changelist", CHANGELISTS)
def test_staff_without_the_review_permission_cannot_export(people, client_for, dataset_chats, changelist):
    client = client_for(people.staff)
    for kind in ("sft", "pairs"):
        assert export(client, kind, changelist=changelist).status_code == 403
        response = run_action(client, kind, [dataset_chats.full], changelist)
        assert response.status_code == 403 and not response.streaming
    assert not AuditEvent.objects.exists()
    assert client_for(people.owner).post(reverse("admin:chat_conversation_export", args=["sft"])).status_code == 302


def test_an_unknown_kind_or_filter_exports_nothing(people, client_for, dataset_chats):
    client = client_for(people.reviewer)
    assert export(client, "csv").status_code == 404
    response = export(client, "sft", "no_such_field=1")
    assert response.status_code == 302 and response.url == reverse("admin:chat_conversation_changelist")
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    "query,expected",
    [
        ("review_state__exact=approved", {"approved"}),
        ("q=needle", {"needle"}),
        ("q=needle&review_state__exact=approved", set()),
        ("model_name=m2", {"needle"}),
        ("", {"approved", "needle", "plain"}),
    ],
)
def test_the_list_export_applies_the_lists_filters_and_search(people, client_for, query, expected):
    chats = {
        "plain": make_chat(people.owner, title="plain"),
        "approved": make_chat(people.owner, title="approved"),
        "needle": make_chat(people.owner, title="needle", content="a needle {n}", model="m2"),
    }
    Conversation.objects.filter(pk=chats["approved"].pk).update(review_state="approved")
    client = client_for(people.reviewer)
    page = client.get(reverse("admin:chat_conversation_changelist") + ("?" + query if query else ""))
    link = reverse("admin:chat_conversation_export", args=["sft"]) + page.context["cl"].get_query_string()
    assert f'action="{link}"' in page.content.decode().replace("&amp;", "&")  # the page posts to this export
    exported = {line["conversation"] for line in lines(client.post(link))}
    assert exported == {chats[name].pk for name in expected}
    assert set(AuditEvent.objects.filter(action=EXPORTED).values_list("conversation_id", flat=True)) == exported


def test_the_list_export_applies_the_date_filter_and_the_date_hierarchy(people, client_for):
    chats = dated_chats(people.owner)
    client = client_for(people.reviewer)
    url = reverse("admin:chat_conversation_changelist")
    export_url = reverse("admin:chat_conversation_export", args=["sft"])
    for name, query in date_links(client, url, chats).items():
        page = client.get(url + query)
        shown = {r.pk for r in page.context["cl"].result_list}
        assert shown and len(shown) < 3, name  # the filter does narrow the list
        assert f'action="{export_url}{query}"' in page.content.decode().replace("&amp;", "&")
        AuditEvent.objects.all().delete()
        assert {line["conversation"] for line in lines(client.post(export_url + query))} == shown, name
        assert set(AuditEvent.objects.filter(action=EXPORTED).values_list("conversation_id", flat=True)) == shown


def test_the_review_queue_exports_only_its_unreviewed_conversations(people, client_for):
    unreviewed, approved = make_chat(people.owner, title="new"), make_chat(people.owner, title="done")
    Conversation.objects.filter(pk=approved.pk).update(review_state="approved")
    client = client_for(people.reviewer)
    response = export(client, "sft", changelist="admin:chat_reviewqueue_changelist")
    assert [line["conversation"] for line in lines(response)] == [unreviewed.pk]


def test_no_line_leaves_without_its_audit_row(people, dataset_chats):
    """The stream re-reads the list after the audit: a conversation that joined it meanwhile is left out."""

    conversations = Conversation.objects.filter(title__in=["full", "short"])
    record = services.export_record(actor=people.reviewer, kind="sft", conversations=conversations)
    AuditEvent.objects.filter(conversation_id=dataset_chats.full.pk).delete()  # as if "full" joined late
    body = "".join(dataset.export_lines(kind="sft", conversations=conversations, export_id=record.id, upto=record.upto))
    assert [json.loads(line)["conversation"] for line in body.splitlines()] == [dataset_chats.short.pk]


def add_chats(people, count, django_user_model):
    """``count`` conversations like the ones reviewers export: a regenerated, rated reply and a gold answer."""
    for n in range(count):
        owner = django_user_model.objects.create_user(username=f"user{n}_{count}")
        chat = make_chat(owner, turns=2, title=f"chat {n}")
        Feedback.objects.create(message=chat.replies[0], user=owner, rating=-1)
        Feedback.objects.create(message=sibling(chat.replies[0], f"again {n}"), user=owner, rating=1)
        GoldAnswer.objects.create(message=chat.replies[1], content="better", author=people.reviewer)


def export_cost(client, kind) -> tuple[int, int]:
    """(queries, lines) of exporting the whole list, the stream read to its end inside the count."""
    with CaptureQueriesContext(connection) as captured:
        count = len(lines(export(client, kind)))
    return len(captured), count


@pytest.mark.parametrize("kind", ["sft", "pairs"])
def test_an_export_costs_a_fixed_number_of_queries_per_chunk(people, client_for, django_user_model, monkeypatch, kind):
    client = client_for(people.reviewer)
    add_chats(people, 5, django_user_model)
    export_cost(client, kind)  # warm Django's per-process caches (content types) before counting
    few, few_lines = export_cost(client, kind)
    add_chats(people, 45, django_user_model)
    many, many_lines = export_cost(client, kind)
    assert many_lines == 10 * few_lines > 0
    assert many == few, f"{few} queries for 5 conversations, {many} for 50 (one chunk of {dataset.CHUNK})"

    monkeypatch.setattr(dataset, "CHUNK", 10)  # now 50 conversations are 5 chunks, 60 are 6
    five, _ = export_cost(client, kind)
    add_chats(people, 10, django_user_model)
    six, _ = export_cost(client, kind)
    per_chunk = six - five
    assert per_chunk == (4 if kind == "sft" else 5)  # ids, audit check, conversations, messages (, feedback)
    assert five - few <= 4 * per_chunk + 1  # four more chunks, and at most one empty last page of ids


def test_under_asgi_the_file_is_streamed_a_chunk_at_a_time(people, dataset_chats, monkeypatch):
    """Daphne serves the admin through ASGI, where Django would read a plain iterator into a list first: the
    response there is an asynchronous iterator, and each chunk is its own part of the body."""
    monkeypatch.setattr(dataset, "CHUNK", 1)

    async def run():
        client = AsyncClient()
        await client.aforce_login(people.reviewer)
        response = await client.post(reverse("admin:chat_conversation_export", args=["sft"]))
        assert response.status_code == 200 and response.is_async
        return [part async for part in response.streaming_content]

    parts = async_to_sync(run)()
    assert [json.loads(part)["conversation"] for part in parts] == [dataset_chats.full.pk, dataset_chats.short.pk]


def streamed(client, kind) -> tuple[int, int, int]:
    """Export the whole list and read the file a chunk at a time, keeping none: (the most memory Python held
    meanwhile, above what it held before; bytes of JSONL read; queries made).

    What counts is memory the export holds, not garbage waiting for the collector, so before each chunk the
    cyclic garbage of the last one is collected (the objects alive before are frozen out of the collector's
    scan, which keeps that cheap) and CPython's type-attribute cache is emptied (it keeps a few thousand
    attribute-name strings — Django's ``"as_" + vendor`` — alive, however long the export)."""
    import gc
    import sys
    import tracemalloc

    def settle():
        gc.collect()
        sys._clear_type_cache()

    queries = []
    settle()
    gc.freeze()
    tracemalloc.start()
    try:
        with connection.execute_wrapper(lambda execute, *args: queries.append(1) or execute(*args)):
            held = tracemalloc.get_traced_memory()[0]
            response = export(client, kind)
            assert response.status_code == 200 and response.streaming
            size = 0
            for part in response.streaming_content:
                size += len(part)
                del part
                settle()
            peak = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
        gc.unfreeze()
    return peak, size, len(queries)


@pytest.mark.parametrize("kind", ["sft", "pairs"])
def test_an_export_reads_in_bounded_memory_and_a_fixed_number_of_queries_per_chunk(
    people, client_for, django_user_model, monkeypatch, kind
):
    """Ten times the conversations, ten times the file, not ten times the memory: only a chunk (10 here) of
    conversations and of audit rows is held at once, and each chunk costs the same queries."""

    monkeypatch.setattr(dataset, "CHUNK", 10)
    monkeypatch.setattr(services, "EXPORT_AUDIT_BATCH", 10)
    client = client_for(people.reviewer)
    add_chats(people, 20, django_user_model)
    streamed(client, kind)  # warm Django's per-process caches (content types, url resolvers)
    small, small_size, small_queries = streamed(client, kind)
    add_chats(people, 180, django_user_model)
    large, large_size, large_queries = streamed(client, kind)
    assert large_size > 9 * small_size > 0
    assert large < 1.5 * small, f"peak {small} bytes for 20 conversations, {large} for 200"
    # 18 more chunks, each: the stream's 4 or 5 queries, and the audit's 2 (a page of ids, one INSERT)
    assert large_queries - small_queries == 18 * ((4 if kind == "sft" else 5) + 2)


def test_a_reply_a_reviewer_stopped_is_nothing_to_learn_from_unless_a_gold_answer_corrects_it(people):
    """A reply stopped from the panel (Cancel generation) is no SFT target and never a pair's chosen side, even
    when its owner liked it; as the reply a gold answer corrects it is the rejected side. Its owner's own Stop
    keeps its text in (the ``short`` chat above)."""
    from chat.replies import services as reply_services

    chat = make_chat(people.owner, turns=2, reply_status="streaming")
    a0, a1 = chat.replies
    other = sibling(a1, "answer 1 other")
    assert services.reply_cancel(actor=people.reviewer, message_ids=[a1.pk]) == {a1.pk: "stopping"}
    reply_services.reply_finish(  # the worker's end of a stopped reply: the text so far
        message_id=a1.pk, content="answer 1 so far", status="stopped", finish_reason="cancelled"
    )
    Feedback.objects.create(message=a1, user=people.owner, rating=1)
    Feedback.objects.create(message=other, user=people.owner, rating=-1)
    q0 = [SYSTEM, user("question <b>0</b>")]

    assert dataset.sft_records(conversation_ids=[chat.pk])[0]["messages"] == q0 + [bot("answer 0")]
    assert dataset.pair_records(conversation_ids=[chat.pk]) == []  # 👍 a1 over 👎 other: not learnt towards

    GoldAnswer.objects.create(message=a1, content="gold 1", author=people.reviewer)
    q1 = q0 + [bot("answer 0"), user("question <b>1</b>")]
    assert dataset.sft_records(conversation_ids=[chat.pk])[0]["messages"] == q1 + [bot("gold 1")]
    [pair] = dataset.pair_records(conversation_ids=[chat.pk])
    assert (pair["source"], pair["chosen"], pair["rejected"]) == ("gold", [bot("gold 1")], [bot("answer 1 so far")])

    # Cancelled too late: its worker finished it first (the audit row says a stop was asked): a complete reply.
    late = make_chat(people.owner, turns=1, reply_status="streaming")
    [reply] = late.replies
    services.reply_cancel(actor=people.reviewer, message_ids=[reply.pk])
    reply_services.reply_finish(message_id=reply.pk, content="answer 0", status="complete", finish_reason="stop")
    assert dataset.sft_records(conversation_ids=[late.pk])[0]["messages"] == q0 + [bot("answer 0")]
