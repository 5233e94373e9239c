"""How fast the review panel's pages are on a big site (``make bench-admin``; README "Review panel").

Fills a database of its own with 100,000 messages in 5,000 conversations of 500 people (feedback on one reply
in ten, a gold answer on one in fifty, failed and stopped replies, alternatives), then asks every review page
as a signed-in reviewer through Django's test client — the whole server side: queries, admin, templates — and
prints the median of several requests per page as a Markdown table.

It lives in ``chatsite`` because it drives the whole site and picks its own database before Django starts:
``--db sqlite`` (a file under ``var/``) or ``--db postgres`` (database ``bench_admin`` on the server of
``DATABASE_URL``, created when missing). The data set is made once and reused while it has the right size.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

CONVERSATIONS, MESSAGES_EACH, PEOPLE = 5_000, 20, 500
ROOT = Path(__file__).resolve().parent.parent


def _database_url(kind: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{ROOT / 'var' / 'bench-admin.sqlite3'}"
    base = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urlsplit(base)
    import psycopg

    admin_url = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'bench_admin'").fetchone():
            conn.execute("CREATE DATABASE bench_admin")
    return urlunsplit(parts._replace(path="/bench_admin"))


def _seed() -> None:
    """Make the data set with bulk inserts (a few seconds), unless it is already there."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import transaction
    from django.utils import timezone

    from chat.models import Conversation, Feedback, GoldAnswer, Message

    if (Message.objects.count() == CONVERSATIONS * MESSAGES_EACH
            and Message.objects.filter(content__contains="kubernetes").exists()):
        return
    User = get_user_model()
    Conversation.objects.all().delete()
    User.objects.filter(username__startswith="person").delete()
    rng = random.Random(7)
    now = timezone.now()
    with transaction.atomic():
        people = User.objects.bulk_create([User(username=f"person{n}") for n in range(PEOPLE)])
        reviewer, _ = User.objects.get_or_create(username="bench-reviewer", defaults={"is_staff": True})
        reviewer.groups.add(Group.objects.get(name="reviewer"))
        chats = Conversation.objects.bulk_create([
            Conversation(owner=people[n % PEOPLE], title=f"Chat {n} about topic {rng.randrange(300)}",
                         model_name=rng.choice(["smollm2-135m-instruct", "qwen2.5-0.5b"]),
                         system_prompt="Be brief." if n % 4 == 0 else "")
            for n in range(CONVERSATIONS)], batch_size=1000)
        # created_at is auto_now_add: spread the activity over 60 days with an update per day bucket.
        for day in range(60):
            ids = [c.pk for c in chats[day::60]]
            Conversation.objects.filter(pk__in=ids).update(created_at=now - timedelta(days=day),
                                                           updated_at=now - timedelta(days=day))
        statuses = [Message.Status.COMPLETE] * 18 + [Message.Status.FAILED, Message.Status.STOPPED]
        messages = []
        for c in chats:
            for n in range(MESSAGES_EACH):
                user = n % 2 == 0
                status = Message.Status.COMPLETE if user else rng.choice(statuses)
                messages.append(Message(
                    conversation=c, role=Message.Role.USER if user else Message.Role.ASSISTANT,
                    content=f"{'question' if user else 'answer'} {n} " + "lorem ipsum dolor " * rng.randrange(3, 30)
                    + ("about kubernetes" if rng.random() < 0.01 else ""),
                    status=status, model_name="" if user else c.model_name,
                    finish_reason="" if user else {"complete": "stop", "failed": "error",
                                                   "stopped": "cancelled"}[status],
                    prompt_tokens=None if user else rng.randrange(20, 2000),
                    completion_tokens=None if user else rng.randrange(5, 500),
                    ttft_ms=None if user else rng.randrange(30, 900),
                    tokens_per_s=None if user else rng.uniform(5, 60)))
        Message.objects.bulk_create(messages, batch_size=2000)
        # Each message follows the one before it in its conversation (one branch; alternatives below).
        rows = list(Message.objects.order_by("conversation_id", "id").values_list("id", "conversation_id"))
        parents = [Message(pk=mid, parent_id=prev[0]) for prev, (mid, cid) in zip([(None, None)] + rows, rows)
                   if prev[1] == cid]
        Message.objects.bulk_update(parents, ["parent"], batch_size=2000)
        for day in range(60):
            Message.objects.filter(conversation_id__in=[c.pk for c in chats[day::60]]).update(
                created_at=now - timedelta(days=day))
        replies = list(Message.objects.filter(role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE)
                       .values_list("id", "conversation__owner_id"))
        Feedback.objects.bulk_create([Feedback(message_id=mid, user_id=owner, rating=rng.choice([1, -1]),
                                               comment=rng.choice(["", "wrong", "great"]))
                                      for mid, owner in replies[::10]], batch_size=2000)
        GoldAnswer.objects.bulk_create([GoldAnswer(message_id=mid, content="the better answer", author=reviewer)
                                        for mid, _ in replies[::50]], batch_size=2000)


def _pages() -> list[tuple[str, str]]:
    from django.urls import NoReverseMatch, reverse

    from chat.models import Conversation, Message

    busiest = Conversation.objects.order_by("-pk").first()
    reply = Message.objects.filter(role=Message.Role.ASSISTANT).order_by("-pk").first()
    pages = [
        ("conversation list", reverse("admin:chat_conversation_changelist")),
        ("conversation list, searched: a word in 1% of messages", reverse("admin:chat_conversation_changelist")
         + "?q=kubernetes"),
        ("conversation list, searched: two words of titles", reverse("admin:chat_conversation_changelist")
         + "?q=topic+173"),
        ("conversation list, has negative feedback", reverse("admin:chat_conversation_changelist")
         + "?negative=yes"),
        ("review queue", reverse("admin:chat_reviewqueue_changelist")),
        ("transcript page (20 messages)", reverse("admin:chat_conversation_change", args=[busiest.pk])),
        ("message list", reverse("admin:chat_message_changelist")),
        ("message list, failed replies", reverse("admin:chat_message_changelist") + "?status__exact=failed"),
        ("message page", reverse("admin:chat_message_change", args=[reply.pk])),
        ("feedback list", reverse("admin:chat_feedback_changelist")),
    ]
    for label, name in [("live generations", "admin:chat_livegeneration_changelist"),
                        ("usage (30 days)", "admin:chat_usagereport_changelist")]:
        try:
            pages.append((label, reverse(name)))
        except NoReverseMatch:
            pass
    return pages


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ["DATABASE_URL"] = _database_url(args.db)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    _seed()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # planner statistics, as a live database has them (autovacuum's job there)
    seeded = time.perf_counter() - started
    client = Client(HTTP_HOST="localhost")
    client.force_login(get_user_model().objects.get(username="bench-reviewer"))
    print(f"{connection.vendor}: data set ready in {seeded:.1f} s; median of {args.repeat} requests per page\n")
    print("| page | median ms | queries |\n|---|---:|---:|")
    for label, url in _pages():
        client.get(url)  # warm caches (content types, templates) as a running server would have them
        times = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as captured:
                t0 = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200:
                print(f"{label}: HTTP {response.status_code}", file=sys.stderr)
                return 1
        print(f"| {label} | {statistics.median(times):.0f} | {len(captured)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
