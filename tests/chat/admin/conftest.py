"""People and transcripts for the review panel's tests: rows made directly, as the services would leave them."""

import datetime

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from chat.models import Conversation, Message


@pytest.fixture
def people(django_user_model, reviewer_group):
    """owner (a normal user with a chat), staff (staff, every model permission of chat, not a reviewer),
    reviewer (staff in the "reviewer" group the migration made), root (a superuser). The tests sign them in
    with ``force_login``, so none has a usable password: hashing one costs 0.4 s, four a test."""

    def user(name, **extra):
        return django_user_model.objects.create_user(username=name, password=None, **extra)

    owner = user("owner")
    staff = user("staff", is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(content_type__app_label="chat").exclude(codename="review_conversation")
    )
    reviewer = user("reviewer", is_staff=True)
    reviewer.groups.add(reviewer_group)
    root = django_user_model.objects.create_superuser(username="root", password=None)
    return type("People", (), dict(owner=owner, staff=staff, reviewer=reviewer, root=root))


@pytest.fixture
def client_for():
    def make(user):
        client = Client()
        client.force_login(user)
        return client

    return make


def make_chat(
    owner, turns=2, *, title="chat", reply_status=Message.Status.COMPLETE, model="m1", content="question <b>{n}</b>"
):
    """A conversation of ``turns`` question/answer pairs, the last answer with ``reply_status``."""
    conversation = Conversation.objects.create(owner=owner, title=title, system_prompt="be kind", model_name=model)
    parent = None
    replies = []
    for n in range(turns):
        question = Message.objects.create(
            conversation=conversation, parent=parent, role=Message.Role.USER, content=content.format(n=n)
        )
        status = reply_status if n == turns - 1 else Message.Status.COMPLETE
        parent = Message.objects.create(
            conversation=conversation,
            parent=question,
            role=Message.Role.ASSISTANT,
            content=f"answer {n}",
            status=status,
            finish_reason=Message.FinishReason.STOP if status == "complete" else "error",
            model_name=model,
            prompt_tokens=10 + n,
            completion_tokens=5,
            ttft_ms=42,
            tokens_per_s=12.5,
            params={"temperature": 0.7},
            error="it broke" if status == "failed" else "",
        )
        replies.append(parent)
    conversation.replies = replies
    return conversation


def message_at(
    conversation,
    when,
    role,
    *,
    status=Message.Status.COMPLETE,
    prompt=None,
    completion=None,
    ttft=None,
    speed=None,
    parent=None,
    model="",
):
    """One message created at ``when`` (``created_at`` is set on insert, so it is moved afterwards)."""
    message = Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=role,
        status=status,
        model_name=model,
        content="private words",
        prompt_tokens=prompt,
        completion_tokens=completion,
        ttft_ms=ttft,
        tokens_per_s=speed,
    )
    Message.objects.filter(pk=message.pk).update(created_at=when)
    return message


def exchange(
    conversation,
    when,
    *,
    status=Message.Status.COMPLETE,
    prompt=None,
    completion=None,
    ttft=None,
    speed=None,
    model="",
):
    """A question at ``when`` and its reply (by ``model``) a second later, as the services would leave them."""
    question = message_at(conversation, when, Message.Role.USER)
    return message_at(
        conversation,
        when + datetime.timedelta(seconds=1),
        Message.Role.ASSISTANT,
        parent=question,
        status=status,
        prompt=prompt,
        completion=completion,
        ttft=ttft,
        speed=speed,
        model=model,
    )


@pytest.fixture
def usage_data(people, django_user_model):
    """Two people over 1–4 March 2025 (UTC), nothing on 3 March; one exchange just outside each end.

    alice: 1 Mar 100 ms/10 tok/s, 300 ms/20 tok/s, one failed (no timings); 2 Mar one stopped, 200 ms/5 tok/s.
    bob: 1 Mar 23:30 50 ms/30 tok/s; 4 Mar 400 ms/8 tok/s and 600 ms/12 tok/s.
    Replies by m1: alice's answered and stopped ones and bob's first of 4 Mar; by m2: the rest.
    """

    def at(day, hour, minute=0):
        return datetime.datetime(2025, 3, day, hour, minute, tzinfo=datetime.timezone.utc)

    alice = django_user_model.objects.create_user(username="alice")
    bob = django_user_model.objects.create_user(username="bob")
    a, b = (Conversation.objects.create(owner=u, title="t") for u in (alice, bob))
    exchange(a, at(1, 10), prompt=10, completion=20, ttft=100, speed=10.0, model="m1")
    exchange(a, at(1, 11), prompt=12, completion=30, ttft=300, speed=20.0, model="m1")
    exchange(a, at(1, 12), status=Message.Status.FAILED, prompt=5, completion=0, model="m2")
    exchange(a, at(2, 9), status=Message.Status.STOPPED, prompt=8, completion=4, ttft=200, speed=5.0, model="m1")
    exchange(b, at(1, 23, 30), prompt=7, completion=9, ttft=50, speed=30.0, model="m2")
    exchange(b, at(4, 8), prompt=20, completion=40, ttft=400, speed=8.0, model="m1")
    exchange(b, at(4, 8, 5), prompt=21, completion=41, ttft=600, speed=12.0, model="m2")
    # Outside 1–4 March: the last second of 28 February and the first of 5 March.
    before, after = at(1, 0) - datetime.timedelta(seconds=2), at(5, 0)
    exchange(a, before, prompt=999, completion=999, ttft=9, speed=99.0, model="m3")
    exchange(b, after, prompt=999, completion=999, ttft=9, speed=99.0, model="m3")
    return type("Usage", (), dict(alice=alice, bob=bob))


def dated_chats(owner) -> dict[str, Conversation]:
    """Three conversations made now, 10 days ago and 400 days ago (so in an earlier year)."""
    from django.utils import timezone

    chats = {}
    for name, days in (("recent", 0), ("ten days", 10), ("old", 400)):
        chats[name] = make_chat(owner, title=name)
        Conversation.objects.filter(pk=chats[name].pk).update(created_at=timezone.now() - datetime.timedelta(days=days))
        chats[name].refresh_from_db()
    return chats


def date_links(client, url: str, chats: dict[str, Conversation]) -> dict[str, str]:
    """The query strings the list page itself links to: the date filter's "Past 7 days", and the date
    hierarchy followed down from the year to the day of the "old" and "ten days" conversations."""
    from django.utils import timezone

    page = client.get(url)
    spec = next(s for s in page.context["cl"].filter_specs if getattr(s, "field_path", "") == "created_at")
    links = {
        "past 7 days": next(
            c["query_string"] for c in spec.choices(page.context["cl"]) if c["display"] == "Past 7 days"
        )
    }
    for name in ("old", "ten days"):
        day = timezone.localtime(chats[name].created_at)
        steps = [
            f"?created_at__year={day.year}",
            f"?created_at__month={day.month}&created_at__year={day.year}",
            f"?created_at__day={day.day}&created_at__month={day.month}&created_at__year={day.year}",
        ]
        shown = page
        for step in steps:  # each level of the hierarchy links to the next
            assert f'href="{step.replace("&", "&amp;")}"' in shown.content.decode(), (name, step)
            shown = client.get(url + step)
        links[f"{name}: day"] = steps[-1]
        links[f"{name}: year"] = steps[0]
    return links
