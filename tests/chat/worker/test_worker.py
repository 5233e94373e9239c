"""The worker's reply job (chat/worker/) with a real engine over a tiny random Llama, the real Redis stream
log and channel layer, and the real database: its endings, each stored once and told once, its titles and
charges, and its pace (its faults: test_worker_faults.py)."""

import asyncio

import pytest

from chat.api import services as api_services
from chat.conversations import organise
from chat.conversations import services as conversation_services
from chat.limits import quotas
from chat.models import Message
from chat.names import lease_key
from chat.replies import liveness
from chat.replies import services as reply_services
from chat.store import client
from chat.text import TITLE_CHARS
from chat.worker import job as worker_job
from chat.worker import runtime as worker_runtime
from chat.worker import tasks
from inference.engine import BatchEngine
from inference.loading import LoadedModel
from tests.helpers.worker import Listener, dones, queued_reply, run_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reply_is_streamed_logged_and_stored_once(make_user, rt):
    user = make_user()
    message = queued_reply(user)
    frames = run_job(user, message, rt)
    stored = Message.objects.get(pk=message.id)
    assert (stored.status, stored.finish_reason) in {("complete", "length"), ("complete", "stop")}
    deltas = [f["text"] for f in frames if f["type"] == "delta"]
    assert "".join(deltas) == stored.content == "".join(client().lrange(f"chat:stream:{message.id}", 0, -1))
    [done] = dones(frames)
    assert (done["content"], done["error"], done["usage"]["completion_tokens"]) == (
        stored.content,
        "",
        stored.completion_tokens,
    )
    assert client().get(lease_key(message.id)) is None and message.id not in rt.holding


def test_the_heartbeat_publishes_each_replys_tokens_so_far_and_the_end_removes_them(make_user, rt, monkeypatch):
    """What the review panel's live page reads: the worker's name and tokens so far, one beat old at most."""

    user = make_user()
    message = queued_reply(user, params={"max_new_tokens": 30})
    rt.engine.eos_ids = set()
    seen = []
    publish = worker_job.ReplyJob.publish

    def publish_and_beat(job, text):
        publish(job, text)
        rt.beat()  # as the heartbeat thread would, between two deltas
        seen.append(liveness.replies_progress([message.id])[message.id])

    monkeypatch.setattr(worker_job.ReplyJob, "publish", publish_and_beat)
    run_job(user, message, rt)
    assert {p.worker for p in seen} == {rt.name}
    counts = [p.tokens for p in seen]
    assert counts[0] >= 1 and counts == sorted(counts) and counts[-1] > counts[0]
    assert counts[-1] <= Message.objects.get(pk=message.id).completion_tokens == 30
    assert liveness.replies_progress([message.id])[message.id] == liveness.ReplyProgress(None, None)


def test_a_prompt_too_long_for_the_model_fails_with_its_reason_in_done(make_user, rt):
    user = make_user()
    message = queued_reply(user, content="word " * 3000)  # the tiny model reads 512 tokens
    frames = run_job(user, message, rt)
    stored = Message.objects.get(pk=message.id)
    assert (stored.status, stored.finish_reason) == ("failed", "error")
    assert "too long for this model" in stored.error and stored.error_code == "context_length_exceeded"
    [done] = dones(frames)
    assert done["error"] == stored.error  # the person reads the server's sentence, not a guess
    assert done["error_code"] == "context_length_exceeded"  # and a program its code


def test_an_api_request_whose_history_does_not_fit_is_refused_not_shortened(make_user, rt):
    """The chat leaves the oldest turns out to fit the window; an API request is answered whole or refused
    (OpenAI's context_length_exceeded), or the program would get an answer to messages it did not send."""
    from inference.prompt import TOO_LONG

    user = make_user()
    key = api_services.api_key_create(owner=user, name="script").key
    turns = [
        {"role": "user", "content": "word " * 300},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "word " * 300},
    ]  # each fits the tiny model's 512 tokens, not both
    reply = api_services.api_completion_create(key=key, turns=turns, params={"max_new_tokens": 12})
    message = reply_services.reply_claim(message_id=reply.id)
    [done] = dones(run_job(user, message, rt))
    stored = Message.objects.get(pk=message.id)
    assert (stored.status, stored.completion_tokens, stored.dropped_messages) == ("failed", None, 0)
    assert done["error"] == stored.error and stored.error.startswith(TOO_LONG)
    assert done["error_code"] == stored.error_code == "context_length_exceeded"
    assert "max_tokens" in stored.error  # the caller sent one: the sentence says it counts
    chat = queued_reply(user, content="word " * 300)  # the same history in the chat: shortened, answered
    reply_services.reply_finish(message_id=chat.id, content="ok", status="complete", finish_reason="stop")
    again = conversation_services.message_send(
        user=user, conversation_id=chat.conversation_id, content="word " * 300, params={"max_new_tokens": 12}
    ).assistant_message
    run_job(user, reply_services.reply_claim(message_id=again.id), rt)
    answered = Message.objects.get(pk=again.id)
    assert answered.status == "complete" and answered.dropped_messages == 2


def test_an_api_request_without_max_tokens_reserves_no_default_and_runs_to_the_window(make_user, rt, settings):
    """OpenAI's behaviour: with no max_tokens, a prompt that fits is answered until the window is full, though
    prompt + the default length would not fit; refused only when the messages leave no room at all."""

    settings.CHAT_DEFAULT_MAX_NEW_TOKENS = 256
    rt.engine.eos_ids = set()  # the tiny model's reply runs until something stops it
    user = make_user()
    key = api_services.api_key_create(owner=user, name="script").key
    window = rt.engine.context_window  # 512
    turns = [{"role": "user", "content": "word " * 400}]  # fits; with 256 reserved, it would not
    reply = api_services.api_completion_create(key=key, turns=turns, params={})
    [done] = dones(run_job(user, reply_services.reply_claim(message_id=reply.id), rt))
    stored = Message.objects.get(pk=reply.id)
    assert stored.prompt_tokens + 256 > window
    assert (stored.status, stored.finish_reason, done["error_code"]) == ("complete", "length", "")
    assert stored.prompt_tokens + stored.completion_tokens == window
    assert stored.params["max_new_tokens"] == stored.completion_tokens  # what bounded it, as stored

    # The same messages with a max_tokens the window cannot hold: refused, the caller's number named.
    asked = api_services.api_completion_create(key=key, turns=turns, params={"max_new_tokens": 256})
    run_job(user, reply_services.reply_claim(message_id=asked.id), rt)
    refused = Message.objects.get(pk=asked.id)
    assert (refused.status, refused.error_code) == ("failed", "context_length_exceeded")
    assert "256 reserved" in refused.error

    # Messages that leave no room for even one token, without max_tokens: refused, no max_tokens blamed.
    full = [
        {"role": "user", "content": "word " * 300},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "word " * 300},
    ]
    none_left = api_services.api_completion_create(key=key, turns=full, params={})
    [done] = dones(run_job(user, reply_services.reply_claim(message_id=none_left.id), rt))
    stored = Message.objects.get(pk=none_left.id)
    assert (stored.status, stored.completion_tokens, done["error_code"]) == ("failed", None, "context_length_exceeded")
    assert "leaving no room for a reply" in stored.error and "max_tokens" not in stored.error


def test_a_worker_refuses_any_pool_but_threads():
    """Forked children would inherit the engine's and the link's threads dead."""

    class Prefork:
        pool_cls = "celery.concurrency.prefork:TaskPool"

    with pytest.raises(RuntimeError, match="--pool threads"):
        tasks._load_at_start(sender=Prefork())


def test_after_the_first_reply_the_model_titles_the_conversation_after_done(make_user, rt, monkeypatch):
    """The task sends done first, then asks the model for a title and tells the tabs with a conversation frame
    (a title that is unusable once cleaned keeps the first words: the next test)."""
    from chat.models import Conversation

    user = make_user()
    message = conversation_services.message_send(
        user=user, conversation_id=None, content="Tell me about lighthouses", params={"max_new_tokens": 12}
    ).assistant_message
    monkeypatch.setattr(worker_runtime, "current", lambda: rt)
    submitted = []
    real_submit = rt.engine.submit
    monkeypatch.setattr(rt.engine, "submit", lambda request: submitted.append(request) or real_submit(request))

    async def go():
        async with Listener(user.id, message.conversation_id) as listener:
            await asyncio.to_thread(tasks.generate_reply.run, message.id)
            return await listener.frames()

    frames = asyncio.run(go())
    types = [f["type"] for f in frames]
    title = Conversation.objects.get(pk=message.conversation_id).title
    # The title's generation is charged to the owner too: its prompt and between 1 and TITLE_MAX_TOKENS tokens.
    stored = Message.objects.get(pk=message.id)
    title_request = submitted[-1]
    assert title_request.request_id == f"title-{message.id}"
    extra = quotas.tokens_used_today(user.pk) - (stored.prompt_tokens + stored.completion_tokens)
    assert len(title_request.input_ids) < extra <= len(title_request.input_ids) + worker_job.TITLE_MAX_TOKENS
    # The seeded tiny model's words are usable once cleaned (nonsense, but words): stored and announced, after done.
    assert title != "Tell me about lighthouses"
    assert types.index("done") < types.index("conversation")
    assert frames[types.index("conversation")]["conversation"]["title"] == title
    assert 0 < len(title) <= TITLE_CHARS
    second = conversation_services.message_send(
        user=user, conversation_id=message.conversation_id, content="More", params={"max_new_tokens": 4}
    )
    job = worker_job.ReplyJob(reply_services.reply_claim(message_id=second.assistant_message.id), rt)
    job.run()
    assert not job.wants_title()  # only after the first reply


def test_a_first_reply_stopped_leaves_the_title_to_the_next_answer_of_the_first_message(make_user, rt):
    """Stopped at once, the first reply made no title, and neither did its regeneration: the conversation kept
    its first words for good. The first reply to finish well titles it."""
    user = make_user()
    first = queued_reply(user, content="Tell me about lighthouses")  # claimed: streaming, then stopped by its reader
    reply_services.reply_finish(
        message_id=first.id, content="Light", status=Message.Status.STOPPED, finish_reason="cancelled"
    )
    again = conversation_services.message_regenerate(user=user, message_id=first.id, params={"max_new_tokens": 4})
    job = worker_job.ReplyJob(reply_services.reply_claim(message_id=again.id), rt)
    job.run()
    assert job.ending["status"] == Message.Status.COMPLETE and job.wants_title()
    third = conversation_services.message_regenerate(user=user, message_id=again.id, params={"max_new_tokens": 4})
    job = worker_job.ReplyJob(reply_services.reply_claim(message_id=third.id), rt)
    job.run()
    assert not job.wants_title()  # one finished well before it: that one titled the conversation


def test_a_failed_title_keeps_the_first_words(make_user, rt, monkeypatch):
    user = make_user()
    message = queued_reply(user, content="Tell me about lighthouses")
    job = worker_job.ReplyJob(message, rt)
    job.run()
    assert job.wants_title()
    monkeypatch.setattr(rt.engine, "submit", lambda request: (_ for _ in ()).throw(RuntimeError("engine down")))
    worker_job.make_title(job)
    from chat.models import Conversation

    assert Conversation.objects.get(pk=message.conversation_id).title == "Tell me about lighthouses"


def test_a_reply_is_charged_once_and_still_charged_when_its_chat_was_deleted_mid_reply(make_user, rt, monkeypatch):
    """Deleting a conversation ends its reply first with no counts; the worker's own end then finds no row and
    charges what it generated itself, so a deletion just before the end does not make the reply free."""

    user = make_user()
    kept = queued_reply(user)
    run_job(user, kept, rt)
    stored = Message.objects.get(pk=kept.id)
    charged = stored.prompt_tokens + stored.completion_tokens
    assert quotas.tokens_used_today(user.pk) == charged  # once, by reply_finish

    doomed = queued_reply(user, content="Another chat")
    real_finish = reply_services.reply_finish

    deleted = []

    def delete_first(**kwargs):  # the worker's end: the chat is deleted just before it (whose end calls this too)
        if not deleted:
            deleted.append(doomed.conversation_id)
            organise.conversation_delete(user=user, conversation_id=doomed.conversation_id)
        return real_finish(**kwargs)

    monkeypatch.setattr(reply_services, "reply_finish", delete_first)
    run_job(user, doomed, rt)
    assert not Message.objects.filter(pk=doomed.id).exists()
    assert quotas.tokens_used_today(user.pk) > charged


def test_a_cpu_worker_streaming_many_replies_widens_each_ones_delta_interval(rt, settings, monkeypatch):
    """CHAT_STREAM_DELTAS_PER_S unset: 80 a second on a CPU, so up to 3 streaming replies keep CHAT_STREAM_FLUSH_MS
    (40 ms) and 16 get one delta each per 200 ms. Streaming: rows decoding, not every reply held (32 held with
    16 rows is 16), and never widened past 1 s; with 0 (and by default on a GPU, not measured) no bound. A longer
    CHAT_STREAM_FLUSH_MS is kept as set."""
    rows = {"n": 0}
    monkeypatch.setattr(BatchEngine, "active", property(lambda engine: rows["n"]))
    assert rt.deltas_per_s == worker_runtime.CPU_DELTAS_PER_S == 80
    rt.holding.update(range(32))
    assert rt.flush_interval() == 0.04  # nothing decoding yet: all of them prepared or waiting for a row
    rows["n"] = 3
    assert rt.flush_interval() == 0.04
    rows["n"] = 16
    assert rt.flush_interval() == 16 / 80
    rt.deltas_per_s = 2
    assert rt.flush_interval() == worker_runtime.MAX_FLUSH_S == 1.0
    for setting, device in ((0, "cpu"), (None, "cuda:0")):  # the model stays on the CPU: only the label matters
        settings.CHAT_STREAM_DELTAS_PER_S = setting
        unbound = worker_runtime.Runtime(
            LoadedModel("tiny-llama", rt.loaded.model, rt.loaded.tokenizer, device, None), background=False
        )
        try:
            unbound.holding.update(range(16))
            assert unbound.deltas_per_s == 0 and unbound.flush_interval() == 0.04
            settings.CHAT_STREAM_FLUSH_MS = 2000  # the operator's own interval, longer than the widening's cap
            assert unbound.flush_interval() == 2.0
        finally:
            settings.CHAT_STREAM_FLUSH_MS = 40
            unbound.close()
    settings.CHAT_STREAM_FLUSH_MS = 2000
    assert rt.flush_interval() == 2.0  # bounded (2 a second, 16 rows): never narrower than the setting either


def test_a_reply_streams_at_the_interval_its_worker_gives(make_user, rt, monkeypatch):
    """The reply asks the worker's interval (not the setting alone): given 10 s, its text goes as its first piece
    at once and the rest with its end."""
    asked = []
    monkeypatch.setattr(rt, "flush_interval", lambda: asked.append(1) or 10.0)
    rt.engine.eos_ids = set()
    user = make_user()
    message = queued_reply(user, params={"max_new_tokens": 12})
    frames = run_job(user, message, rt)
    deltas = [f["text"] for f in frames if f["type"] == "delta"]
    stored = Message.objects.get(pk=message.id)
    assert asked and stored.completion_tokens == 12 and 1 <= len(deltas) <= 2
    assert "".join(deltas) == stored.content
