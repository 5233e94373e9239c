"""Fair order in the model's queue, before any worker holds the replies: each reply is queued at its turn among
its person's active replies (its Celery priority), so a person's first waiting reply is taken before anyone's
second. Read back with kombu's own consumer over the real Redis, as a worker takes them."""

import pytest
from celery import current_app

from chat import metrics, names
from chat.conversations import services as conversation_services
from chat.replies import catalog, services
from chat.store import client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queue(settings):
    name = names.model_queue(catalog.worker_model(settings.CHAT_DEFAULT_MODEL))
    client().delete(*metrics.queue_keys(name))
    yield name
    client().delete(*metrics.queue_keys(name))


def taken_in_order(queue: str) -> list[int]:
    """The reply ids of the queued tasks, in the order a worker would take them."""
    order = []
    with current_app.connection_for_read() as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            order.append(int(message.headers["argsrepr"].strip("[]")))
    return order


def send(user, text: str) -> int:
    return conversation_services.message_send(user=user, conversation_id=None, content=text).assistant_message.id


def test_a_persons_first_waiting_reply_is_taken_before_anyones_second(make_user, queue):
    ann, bob, cid = make_user("ann"), make_user("bob"), make_user("cid")
    a1, a2, a3 = send(ann, "one"), send(ann, "two"), send(ann, "three")
    b1, b2 = send(bob, "one"), send(bob, "two")
    c1 = send(cid, "one")
    # Arrived a1 a2 a3 b1 b2 c1; taken by turn, then arrival: everyone's first, then the seconds, then the third.
    assert taken_in_order(queue) == [a1, b1, c1, a2, b2, a3]


def test_a_reply_sent_again_keeps_its_turn(make_user, queue):
    """The sweep queues a reply again when its worker died: counted by age, its turn is what it was."""
    ann, bob = make_user("ann"), make_user("bob")
    a1, a2 = send(ann, "one"), send(ann, "two")
    b1 = send(bob, "one")
    assert taken_in_order(queue) == [a1, b1, a2]
    services.reply_dispatch(message_id=a2)
    services.reply_dispatch(message_id=a1)
    assert taken_in_order(queue) == [a1, a2]
