"""A task reaching a worker of another model (queued by an earlier release on the shared queue, which the
default model's workers read) is sent on to its model's queue unclaimed, never written by the wrong model."""

import json

import pytest

from chat import names, served
from chat.models import Conversation, Message
from chat.store import client
from chat.worker import runtime, tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_task_for_another_model_goes_to_that_models_queue_unclaimed(make_user, rt, monkeypatch, settings):  # noqa: F811
    settings.CHAT_SERVED_MODELS = served.parse(f"{rt.model}={rt.model},other=/models/other", "")
    monkeypatch.setattr(runtime, "current", lambda: rt)
    conversation = Conversation.objects.create(owner=make_user(), model_name="other")
    asked = Message.objects.create(conversation=conversation, role="user", content="Hi")
    reply = Message.objects.create(
        conversation=conversation, parent=asked, role="assistant", status="queued", model_name="other"
    )
    queue = names.model_queue("other")
    client().delete(queue)
    tasks.generate_reply.run(reply.id)  # as an earlier release queued it: no model named
    stored = Message.objects.get(pk=reply.id)
    assert (stored.status, stored.worker) == ("queued", "")  # not claimed here
    queued = [json.loads(t)["headers"] for t in client().lrange(queue, 0, -1)]
    assert [(t["argsrepr"], t["kwargsrepr"]) for t in queued] == [(f"[{reply.id}]", "{'model': 'other'}")]
    client().delete(queue)
