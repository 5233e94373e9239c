"""How fast the review panel's pages are on a big site (``make bench-admin``; docs/review-panel.md).

Fills a database of its own with 100,000 messages in 5,000 conversations of 500 people (feedback on one reply
in ten, a gold answer on one in fifty, failed and stopped replies, alternatives), then asks every review page
as a signed-in reviewer (the audit log as a superuser) through Django's test client — the whole server side:
queries, admin, templates — and prints the median of several requests per page as a Markdown table; then exports
the whole conversation list both ways, timed and with the peak memory Python allocated (tracemalloc) while the
file was read.

Each page must make exactly the queries ``QUERIES`` says, the numbers tests/chat/admin/test_queries.py asserts on
5 and 50 conversations: a page that costs more on the big data set (a query per row) makes the run exit 1.

It lives in ``chatsite`` because it drives the whole site and picks its own database before Django starts:
``--db sqlite`` (a file under ``var/``) or ``--db postgres`` (database ``bench_admin`` on the server of
``DATABASE_URL``, created when missing). The data set is made once and reused while it has the right size.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import re
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

CONVERSATIONS, MESSAGES_EACH, PEOPLE = 5_000, 20, 500
AUDIT_ROWS = 20_000  # transcript opens recorded before the run: the audit log's list has pages to count
ROOT = Path(__file__).resolve().parent.parent

# The queries each page makes, whatever the data holds: tests/chat/admin/test_queries.py asserts exactly these
# with 5 and with 50 conversations, and the benchmark exits 1 when the big data set gets another number. A
# searched page is asked as a new search each time (``as_new_search``): its audit row and the session's note.
QUERIES = {
    "conversation list": 10,
    "conversation list, searched: a word in 1% of messages": 12,
    "conversation list, searched: two words of titles": 12,
    "conversation list, has negative feedback": 10,
    "conversation list, one month (date hierarchy)": 9,
    "conversation list, past 7 days (date filter)": 10,
    "review queue": 7,
    "transcript page (20 messages)": 10,  # its messages' attached documents: one prefetch
    "message list": 7,
    "message list, failed replies": 7,
    "message list, searched: a word in 1% of messages": 9,
    "message page": 7,
    "feedback list": 7,
    "gold-answer list": 7,
    "audit log (superuser)": 7,
    "live generations": 7,
    "usage (30 days)": 15,
}
_TRANSACTION = re.compile(r"\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Page:
    label: str
    url: str
    superuser: bool = False  # asked as a superuser (the audit log), else as a reviewer


def as_new_search(client) -> None:
    """Make the client's next searched page a new search, as a reviewer's first one is: forget the search its
    session last had audited, or asking the same page again would be another page of that search, unrecorded."""
    from chat.admin.common import LAST_SEARCH

    session = client.session
    if LAST_SEARCH in session:
        del session[LAST_SEARCH]
        session.save()


def counted(captured) -> int:
    """The queries of a ``CaptureQueriesContext``, less transaction control: a view's ``atomic`` is a BEGIN in
    autocommit (here) but a SAVEPOINT and its RELEASE inside a test's transaction, and neither reads a row."""
    return sum(1 for query in captured.captured_queries if not _TRANSACTION.match(query["sql"]))


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

    from chat.models import AuditEvent, Conversation, Feedback, GoldAnswer, Message

    User = get_user_model()
    if not User.objects.filter(username="bench-root").exists():
        User.objects.create_superuser(username="bench-root", password=None)
    if (
        Message.objects.count() == CONVERSATIONS * MESSAGES_EACH
        and Message.objects.filter(content__contains="kubernetes").exists()
        and AuditEvent.objects.filter(actor_name="bench-seed").count() == AUDIT_ROWS
    ):
        return
    AuditEvent.objects.all().delete()
    Conversation.objects.all().delete()
    User.objects.filter(username__startswith="person").delete()
    rng = random.Random(7)
    now = timezone.now()
    with transaction.atomic():
        people = User.objects.bulk_create([User(username=f"person{n}") for n in range(PEOPLE)])
        reviewer, _ = User.objects.get_or_create(username="bench-reviewer", defaults={"is_staff": True})
        reviewer.groups.add(Group.objects.get(name="reviewer"))
        chats = Conversation.objects.bulk_create(
            [
                Conversation(
                    owner=people[n % PEOPLE],
                    title=f"Chat {n} about topic {rng.randrange(300)}",
                    model_name=rng.choice(["smollm2-135m-instruct", "qwen2.5-0.5b"]),
                    system_prompt="Be brief." if n % 4 == 0 else "",
                )
                for n in range(CONVERSATIONS)
            ],
            batch_size=1000,
        )
        # created_at is auto_now_add: spread the activity over 60 days with an update per day bucket.
        for day in range(60):
            ids = [c.pk for c in chats[day::60]]
            Conversation.objects.filter(pk__in=ids).update(
                created_at=now - timedelta(days=day), updated_at=now - timedelta(days=day)
            )
        statuses = [Message.Status.COMPLETE] * 18 + [Message.Status.FAILED, Message.Status.STOPPED]
        messages = []
        for c in chats:
            for n in range(MESSAGES_EACH):
                user = n % 2 == 0
                status = Message.Status.COMPLETE if user else rng.choice(statuses)
                messages.append(
                    Message(
                        conversation=c,
                        role=Message.Role.USER if user else Message.Role.ASSISTANT,
                        content=f"{'question' if user else 'answer'} {n} "
                        + "lorem ipsum dolor " * rng.randrange(3, 30)
                        + ("about kubernetes" if rng.random() < 0.01 else ""),
                        status=status,
                        model_name="" if user else c.model_name,
                        finish_reason=""
                        if user
                        else {"complete": "stop", "failed": "error", "stopped": "cancelled"}[status],
                        prompt_tokens=None if user else rng.randrange(20, 2000),
                        completion_tokens=None if user else rng.randrange(5, 500),
                        ttft_ms=None if user else rng.randrange(30, 900),
                        tokens_per_s=None if user else rng.uniform(5, 60),
                    )
                )
        Message.objects.bulk_create(messages, batch_size=2000)
        # Each message follows the one before it in its conversation (one branch; alternatives below).
        rows = list(Message.objects.order_by("conversation_id", "id").values_list("id", "conversation_id"))
        parents = [
            Message(pk=mid, parent_id=prev[0])
            for prev, (mid, cid) in zip([(None, None)] + rows, rows)
            if prev[1] == cid
        ]
        Message.objects.bulk_update(parents, ["parent"], batch_size=2000)
        for day in range(60):
            Message.objects.filter(conversation_id__in=[c.pk for c in chats[day::60]]).update(
                created_at=now - timedelta(days=day)
            )
        replies = list(
            Message.objects.filter(role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE).values_list(
                "id", "conversation__owner_id"
            )
        )
        Feedback.objects.bulk_create(
            [
                Feedback(
                    message_id=mid,
                    user_id=owner,
                    rating=rng.choice([1, -1]),
                    comment=rng.choice(["", "wrong", "great"]),
                )
                for mid, owner in replies[::10]
            ],
            batch_size=2000,
        )
        GoldAnswer.objects.bulk_create(
            [GoldAnswer(message_id=mid, content="the better answer", author=reviewer) for mid, _ in replies[::50]],
            batch_size=2000,
        )
        opened = AuditEvent.Action.OPENED_TRANSCRIPT
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(
                    actor=reviewer, actor_name="bench-seed", action=opened, conversation_id=chats[n % CONVERSATIONS].pk
                )
                for n in range(AUDIT_ROWS)
            ],
            batch_size=2000,
        )
        for day in range(60):
            AuditEvent.objects.filter(conversation_id__in=[c.pk for c in chats[day::60]]).update(
                created_at=now - timedelta(days=day)
            )


def pages() -> list[Page]:
    """The review pages measured, their URLs made from whatever the database holds (the benchmark's data set,
    or a test's few conversations)."""
    from urllib.parse import urlencode

    from django.urls import reverse
    from django.utils import timezone

    from chat.models import Conversation, Message

    def changelist(model: str, query: str = "") -> str:
        return reverse(f"admin:chat_{model}_changelist") + (f"?{query}" if query else "")

    busiest = Conversation.objects.order_by("-pk").first()
    reply = Message.objects.filter(role=Message.Role.ASSISTANT).order_by("-pk").first()
    month = timezone.localtime(busiest.created_at)
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    week = {"created_at__gte": today - timedelta(days=7), "created_at__lt": today + timedelta(days=1)}  # its link
    return [
        Page("conversation list", changelist("conversation")),
        Page("conversation list, searched: a word in 1% of messages", changelist("conversation", "q=kubernetes")),
        Page("conversation list, searched: two words of titles", changelist("conversation", "q=topic+173")),
        Page("conversation list, has negative feedback", changelist("conversation", "negative=yes")),
        Page(
            "conversation list, one month (date hierarchy)",
            changelist("conversation", f"created_at__month={month.month}&created_at__year={month.year}"),
        ),
        Page("conversation list, past 7 days (date filter)", changelist("conversation", urlencode(week))),
        Page("review queue", changelist("reviewqueue")),
        Page("transcript page (20 messages)", reverse("admin:chat_conversation_change", args=[busiest.pk])),
        Page("message list", changelist("message")),
        Page("message list, failed replies", changelist("message", "status__exact=failed")),
        Page("message list, searched: a word in 1% of messages", changelist("message", "q=kubernetes")),
        Page("message page", reverse("admin:chat_message_change", args=[reply.pk])),
        Page("feedback list", changelist("feedback")),
        Page("gold-answer list", changelist("goldanswer")),
        Page("audit log (superuser)", changelist("auditevent"), superuser=True),
        Page("live generations", changelist("livegeneration")),
        Page("usage (30 days)", changelist("usagereport")),
    ]


def _export(client, kind: str) -> tuple[int, int]:
    """Export the whole conversation list as ``kind`` and read the file a chunk at a time: (bytes, queries)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    with CaptureQueriesContext(connection) as captured:
        response = client.post(reverse("admin:chat_conversation_export", args=[kind]))
        if response.status_code != 200:
            raise SystemExit(f"export {kind}: HTTP {response.status_code}")
        size = sum(len(part) for part in response.streaming_content)
    return size, counted(captured)


def _exports(client, repeat: int) -> None:
    """The export rows: median time of ``repeat`` exports, then one more under tracemalloc for its peak."""
    from chat.models import AuditEvent

    print(
        f"\n| export ({CONVERSATIONS:,} conversations) | median ms | queries | MiB written | peak MiB allocated |\n"
        "|---|---:|---:|---:|---:|"
    )
    for kind, label in (("sft", "SFT transcripts"), ("pairs", "preference pairs")):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            size, queries = _export(client, kind)
            times.append((time.perf_counter() - t0) * 1000)
        gc.collect()
        tracemalloc.start()
        try:
            held = tracemalloc.get_traced_memory()[0]
            _export(client, kind)
            peak = tracemalloc.get_traced_memory()[1] - held
        finally:
            tracemalloc.stop()
        print(f"| {label} | {statistics.median(times):.0f} | {queries} | {size / 2**20:.1f} | {peak / 2**20:.1f} |")
    # Each export recorded an audit row per conversation: removed, so a second run measures the same audit log.
    AuditEvent.objects.filter(action=AuditEvent.Action.EXPORTED, actor_name="bench-reviewer").delete()


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
    User = get_user_model()
    clients = {}
    for superuser, name in ((False, "bench-reviewer"), (True, "bench-root")):
        clients[superuser] = Client(HTTP_HOST="localhost")
        clients[superuser].force_login(User.objects.get(username=name))
    print(f"{connection.vendor}: data set ready in {seeded:.1f} s; median of {args.repeat} requests per page\n")
    print("| page | median ms | queries |\n|---|---:|---:|")
    wrong = []
    for page in pages():
        client = clients[page.superuser]
        client.get(page.url)  # warm caches (content types, templates) as a running server would have them
        times = []
        for _ in range(args.repeat):
            as_new_search(client)
            with CaptureQueriesContext(connection) as captured:
                t0 = time.perf_counter()
                response = client.get(page.url)
                times.append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200:
                print(f"{page.label}: HTTP {response.status_code}", file=sys.stderr)
                return 1
        queries = counted(captured)
        print(f"| {page.label} | {statistics.median(times):.0f} | {queries} |")
        if queries != QUERIES.get(page.label):
            wrong.append(f"{page.label}: {queries} queries, tests bound it to {QUERIES.get(page.label)}")
    _exports(clients[False], args.repeat)
    for line in wrong:
        print(line, file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
