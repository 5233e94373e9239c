"""The worker's reply job (chat/worker/) when something fails — the model, Redis, the database, the queue, a
lost broadcast — over a real engine on a tiny random Llama, the real Redis and the real database: each fault ends
the reply once, with a sentence, and lets its lease go."""

import asyncio

import pytest
from django.db import OperationalError

from chat import events
from chat.conversations import services as conversation_services
from chat.models import Message
from chat.names import lease_key
from chat.replies import liveness, streamlog, sweep
from chat.replies import services as reply_services
from chat.store import client
from chat.worker import job as worker_job
from tests.helpers.worker import Listener, dones, queued_reply, run_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failing_model_fails_the_reply_with_a_sentence(make_user, rt, monkeypatch):
    user = make_user()
    message = queued_reply(user)

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(rt.engine.model, "forward", broken)
    frames = run_job(user, message, rt)
    stored = Message.objects.get(pk=message.id)
    assert (stored.status, stored.finish_reason) == ("failed", "error") and "illegal memory access" in stored.error
    assert dones(frames)[0]["error"] == stored.error


def test_a_delta_that_cannot_be_published_is_not_stored(make_user, rt, monkeypatch, settings):
    """Publishing fails past the grace period at the third delta: the reply fails, and the stored text is
    exactly what the stream log (and so every socket) has."""
    settings.CHAT_REDIS_GRACE_S = 0
    user = make_user()
    message = queued_reply(user, params={"max_new_tokens": 40})
    append = streamlog.append

    async def flaky(message_id, seq, pieces):
        if seq == 2:
            raise OSError("connection reset by peer")
        await append(message_id, seq, pieces)

    monkeypatch.setattr(streamlog, "append", flaky)
    rt.engine.eos_ids = set()
    monkeypatch.setattr(worker_job.settings, "CHAT_STREAM_FLUSH_MS", 0)
    monkeypatch.setattr(rt, "deltas_per_s", 0)  # a delta per token
    run_job(user, message, rt)
    stored = Message.objects.get(pk=message.id)
    logged = "".join(client().lrange(f"chat:stream:{message.id}", 0, -1))
    assert stored.status == "failed" and "interrupted" in stored.error
    assert stored.content == logged and len(client().lrange(f"chat:stream:{message.id}", 0, -1)) == 2


def test_the_final_write_failing_once_still_ends_the_reply_exactly_once(make_user, rt, monkeypatch):
    user = make_user()
    message = queued_reply(user)
    finish = reply_services.reply_finish
    calls = []

    def blip(**kwargs):
        calls.append(kwargs["status"])
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return finish(**kwargs)

    monkeypatch.setattr(reply_services, "reply_finish", blip)
    frames = run_job(user, message, rt)
    stored = Message.objects.get(pk=message.id)
    assert len(calls) == 2 and stored.status == "complete"
    assert len(dones(frames)) == 1
    assert client().get(lease_key(message.id)) is None and message.id not in rt.holding


def test_when_the_final_write_never_succeeds_the_lease_goes_and_the_sweep_ends_it(make_user, rt, monkeypatch, settings):
    user = make_user()
    message = queued_reply(user)
    monkeypatch.setattr(worker_job, "FINISH_RETRY_DELAYS_S", (0.01,))
    finish = reply_services.reply_finish

    def down(**kwargs):
        raise OperationalError("the database is away")

    monkeypatch.setattr(reply_services, "reply_finish", down)
    run_job(user, message, rt)
    assert Message.objects.get(pk=message.id).status == "streaming"
    assert client().get(lease_key(message.id)) is None  # not renewed forever: the sweep may act
    monkeypatch.setattr(reply_services, "reply_finish", finish)
    settings.CHAT_LEASE_TTL_S = 0
    ended = sweep.sweep()
    stored = Message.objects.get(pk=message.id)
    assert [m.id for m in ended] == [message.id]
    assert stored.status == "failed" and stored.content == streamlog.read_text_sync(message.id)


def test_a_stop_whose_broadcast_was_lost_ends_the_reply_at_the_next_checkpoint(make_user, rt, monkeypatch):
    user = make_user()
    message = queued_reply(user, params={"max_new_tokens": 300})
    rt.engine.eos_ids = set()
    monkeypatch.setattr(events, "broadcast_cancel_sync", lambda message_id: None)  # the broadcast is lost
    monkeypatch.setattr(worker_job, "CHECKPOINT_S", 0)
    conversation_services.message_stop(user=user, message_id=message.id)
    frames = run_job(user, message, rt)
    stored = Message.objects.get(pk=message.id)
    assert (stored.status, stored.finish_reason) == ("stopped", "cancelled")
    assert stored.completion_tokens < 300
    assert dones(frames)[0]["status"] == "stopped"


def test_the_sweep_fails_a_reply_nobody_took_in_time(make_user, settings):
    user = make_user()
    sent = conversation_services.message_send(user=user, conversation_id=None, content="anyone?")
    settings.CHAT_QUEUE_TIMEOUT_S = 0

    async def go():
        async with Listener(user.id, sent.conversation.id) as listener:
            ended = await asyncio.to_thread(sweep.sweep)
            return ended, await listener.frames()

    ended, frames = asyncio.run(go())
    stored = Message.objects.get(pk=sent.assistant_message.id)
    assert [m.id for m in ended] == [stored.id]
    assert (stored.status, stored.error) == ("failed", sweep.QUEUE_TIMED_OUT)
    assert dones(frames)[0]["error"] == sweep.QUEUE_TIMED_OUT
    assert sweep.sweep() == []  # ended once


def test_a_reply_that_cannot_be_queued_fails_visibly(make_user, monkeypatch):
    """The broker is unreachable when the task is sent: the reply fails with a sentence, never stays queued."""
    from celery import current_app
    from kombu.exceptions import OperationalError as BrokerError

    def unreachable(*args, **kwargs):
        raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(current_app, "send_task", unreachable)
    user = make_user()

    async def go():
        async with Listener(user.id) as listener:
            sent = await asyncio.to_thread(
                conversation_services.message_send, user=user, conversation_id=None, content="hi"
            )
            return sent, await listener.frames()

    sent, frames = asyncio.run(go())
    stored = Message.objects.get(pk=sent.assistant_message.id)
    assert (stored.status, stored.error) == ("failed", "The generation queue is unreachable; try again in a moment.")
    # The person's group: a new conversation's first frames, and its reply's start and end (its done goes to the
    # conversation's group, which the sending tab joins once the send returns; its watchdog finds the end there).
    assert [f["type"] for f in frames] == ["conversation", "message", "message", "activity", "activity"]
    assert frames[-1]["state"] == "ended" and frames[-1]["message"] == stored.id


def test_a_lease_that_cannot_be_taken_at_the_start_still_ends_the_reply_and_lets_it_go(make_user, rt, monkeypatch):

    user = make_user()
    message = queued_reply(user)
    heartbeat = liveness.heartbeat
    calls = []

    def blip(name, ids, tokens=None):
        calls.append(ids)
        if len(calls) == 1:
            raise ConnectionError("Redis restarting")
        return heartbeat(name, ids, tokens)

    monkeypatch.setattr(liveness, "heartbeat", blip)
    run_job(user, message, rt)
    assert Message.objects.get(pk=message.id).status == "complete"
    assert message.id not in rt.holding and client().get(lease_key(message.id)) is None


def test_a_checkpoint_hitting_a_database_blip_does_not_fail_the_reply(make_user, rt, monkeypatch):
    user = make_user()
    message = queued_reply(user, params={"max_new_tokens": 30})
    rt.engine.eos_ids = set()
    monkeypatch.setattr(worker_job, "CHECKPOINT_S", 0)
    checkpoint = reply_services.reply_checkpoint
    calls = []

    def blip(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return checkpoint(**kwargs)

    monkeypatch.setattr(reply_services, "reply_checkpoint", blip)
    run_job(user, message, rt)
    stored = Message.objects.get(pk=message.id)
    assert len(calls) > 1 and (stored.status, stored.completion_tokens) == ("complete", 30)
