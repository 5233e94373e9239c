"""Every worker gets an even share of the replies (chat/replies/balance.py): over the real Redis, with the real task
handing a reply to the real broker queue of a less busy worker, and the sweep queueing again a reply handed to
a worker that died."""

import json
import os

import pytest
from django.conf import settings

from chat import names
from chat.conversations import services
from chat.models import Message
from chat.names import LOAD_KEY, handed_key
from chat.replies import balance, liveness, sweep
from chat.store import client
from chat.worker import runtime, tasks

pytestmark = pytest.mark.django_db(transaction=True)
NAMES = ("w-a", "w-b", "w-dead")


@pytest.fixture
def fresh_loads():
    """No counts, and only the workers each test makes live: not the stand-in of tests/chat/conftest.py, nor one
    an earlier test left alive (tests/chat/accounts/test_erasure.py's "worker-1" heartbeat: it lives for its lease,
    and made these tests fail when they ran within it)."""
    r = client()
    r.delete(LOAD_KEY, *(names.worker_queue(w) for w in NAMES))
    liveness.worker_gone(f"unit-tests-{os.getpid()}", settings.CHAT_DEFAULT_MODEL)
    for worker in r.zrange(names.WORKERS_KEY, 0, -1):
        liveness.worker_gone(worker, settings.CHAT_DEFAULT_MODEL)
    yield
    r.delete(LOAD_KEY, *(names.worker_queue(w) for w in NAMES))
    r.zrem("chat:workers", *NAMES)
    for model in (settings.CHAT_DEFAULT_MODEL, "other-model"):
        r.zrem(names.model_workers_key(model), *NAMES)


def test_a_worker_holding_more_than_a_peer_hands_it_the_next_and_one_alone_never_does(fresh_loads):
    liveness.heartbeat("w-a", [])
    assert balance.take("w-a") is None and balance.take("w-a") is None  # alone: it takes everything
    liveness.heartbeat("w-b", [])
    assert balance.take("w-a") == "w-b"  # two against none: the next one is counted on w-b, and handed to it
    assert balance.loads() == {"w-a": 2, "w-b": 1}
    assert balance.take("w-b") is None  # 1 before, against 2: w-b takes its own
    assert balance.take("w-b") is None  # 2 and 2 before: taken (3 against 2)
    assert balance.take("w-b") == "w-a"
    assert balance.loads() == {"w-a": 3, "w-b": 3}
    balance.moved_back("w-a", "w-b")  # a hand-over that failed: the place goes back
    assert balance.loads() == {"w-a": 2, "w-b": 4}
    balance.give_back("w-b")
    assert balance.loads()["w-b"] == 3


def test_a_dead_workers_count_does_not_count_and_goes_with_its_queue_when_a_worker_starts(fresh_loads):
    r = client()
    r.hset(LOAD_KEY, "w-dead", 0)  # it died holding nothing: it would look like the least busy
    r.lpush(names.worker_queue("w-dead"), "a task nobody will read")
    liveness.heartbeat("w-a", [])
    assert balance.take("w-a") is None and balance.take("w-a") is None
    balance.start("w-b")
    assert sorted(r.hkeys(LOAD_KEY)) == ["w-a", "w-b"]
    assert not r.exists(names.worker_queue("w-dead"))
    assert balance.loads() == {"w-a": 2}  # w-b holds nothing but is not live until its first beat


def test_the_task_hands_a_reply_to_a_less_busy_worker_which_writes_it(make_user, rt, monkeypatch, fresh_loads):  # noqa: F811
    monkeypatch.setattr(runtime, "current", lambda: rt)
    liveness.heartbeat(rt.name, [], model=rt.model)
    liveness.heartbeat("w-b", [], model=rt.model)
    user = make_user()
    sent = services.message_send(user=user, conversation_id=None, content="Hello", params={"max_new_tokens": 4})
    reply = sent.assistant_message
    assert balance.take(rt.name, rt.model) is None  # this worker already writes one reply; w-b none

    tasks.generate_reply.run(reply.id, model=rt.model)
    queued = client().lrange(names.worker_queue("w-b"), 0, -1)  # on w-b's own queue, which only w-b reads
    assert len(queued) == 1
    task = json.loads(queued[0])["headers"]
    assert (task["task"], task["argsrepr"], task["kwargsrepr"]) == (
        names.GENERATE_REPLY_TASK,
        f"[{reply.id}]",
        f"{{'handed': True, 'model': '{rt.model}'}}",
    )
    assert Message.objects.get(pk=reply.id).status == Message.Status.QUEUED  # not started here
    assert balance.loads() == {rt.name: 1, "w-b": 1}  # its place is counted on w-b
    assert client().get(handed_key(reply.id)) == "w-b"

    # Played by this runtime: the handed task runs without counting again, and gives its place back at the end.
    client().hset(LOAD_KEY, rt.name, 2)  # (w-b's place, here)
    tasks.generate_reply.run(reply.id, handed=True, model=rt.model)
    done = Message.objects.get(pk=reply.id)
    assert done.status == Message.Status.COMPLETE
    assert (done.model_name, done.worker) == (rt.model, rt.name)  # the reply says which worker of which model
    assert balance.loads()[rt.name] == 1
    client().zrem("chat:workers", rt.name)


def test_a_reply_handed_to_a_worker_that_died_is_queued_again(make_user, fresh_loads, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    # The sweep waits until Redis has been up a lease's length (after a restart, heartbeats are not back yet);
    # the test's Redis may have started seconds ago.
    monkeypatch.setattr(liveness, "leases_trustworthy", lambda: True)

    model = settings.CHAT_DEFAULT_MODEL
    liveness.heartbeat("w-a", [], model=model)
    user = make_user()
    reply = services.message_send(user=user, conversation_id=None, content="Hi").assistant_message
    Message.objects.filter(pk=reply.pk).update(created_at=timezone.now() - timedelta(seconds=30))
    balance.handed(reply.id, "w-dead", ttl=600)  # w-dead never beat again
    queue = names.model_queue(model)
    before = client().llen(queue)
    assert sweep.sweep() == []  # nothing ended …
    assert client().llen(queue) == before + 1  # … but the reply is on its model's queue again
    assert json.loads(client().lindex(queue, 0))["headers"]["argsrepr"] == f"[{reply.id}]"
    assert sweep.sweep() == [] and client().llen(queue) == before + 1  # once, not every sweep
    assert Message.objects.get(pk=reply.pk).status == Message.Status.QUEUED


def test_a_worker_hands_replies_only_to_workers_of_its_own_model(fresh_loads):
    """A less busy worker of another model is no peer: it could not write the reply."""
    liveness.heartbeat("w-a", [], model=settings.CHAT_DEFAULT_MODEL)
    liveness.heartbeat("w-b", [], model="other-model")
    assert [balance.take("w-a", settings.CHAT_DEFAULT_MODEL) for _ in range(3)] == [None, None, None]
    assert balance.loads(settings.CHAT_DEFAULT_MODEL) == {"w-a": 3}
    liveness.heartbeat("w-dead", [], model=settings.CHAT_DEFAULT_MODEL)  # a peer of its model: now it hands on
    assert balance.take("w-a", settings.CHAT_DEFAULT_MODEL) == "w-dead"
